// kernels_scalar
#pragma once
#include "api.hpp"
