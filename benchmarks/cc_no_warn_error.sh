#!/bin/sh
# Compiler launcher for benchmark builds: runs the real compiler with -Wno-error appended, so a
# warning in someone's in-progress file cannot stop a benchmark build. (-DCMAKE_C_FLAGS=-Wno-error
# does not work: CMake puts CMAKE_C_FLAGS before the project's add_compile_options(-Werror), and
# GCC honours the last one.) Optimization flags are untouched.
exec "$@" -Wno-error
