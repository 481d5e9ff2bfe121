// threads
#pragma once
#include "api.hpp"
