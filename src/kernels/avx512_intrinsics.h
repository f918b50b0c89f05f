// <immintrin.h> for the translation units built with AVX-512 flags.
// GCC 12 warns about the _mm512_undefined_* placeholders inside its own
// AVX-512 intrinsics (GCC bug 105593, fixed in GCC 13); no value in these
// files is read uninitialized. Include it first: the pragmas hold for the
// rest of the translation unit.
#pragma once

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>
