#include "fwd/control/config.hpp"
