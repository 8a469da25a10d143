// The bare-metal test program's entry point: runs every registered test and prints
// "N passed, N failed".
#define TERN_MINITEST_MAIN
#include "minitest.hpp"
