// The one source of kvstack_test_pch, the target whose precompiled header
// every test executable reuses (tests/CMakeLists.txt). Nothing else lives
// here: the header list is in the CMake file.
