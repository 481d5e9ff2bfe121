// sampler
#pragma once
#include "api.hpp"
