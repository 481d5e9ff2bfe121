// kernels_avx2
#pragma once
#include "api.hpp"
