// Precompiled for the unit tests (see base.hpp); main.cpp, which defines CATCH_CONFIG_MAIN, is left out.
#pragma GCC system_header
#include "asio.hpp"

#include <catch2/catch.hpp>
