#pragma once
// XXH3 for the swap engine, through libxxhash's run-time CPU dispatch: its AVX2 / AVX-512 code
// hashes guest RAM about twice as fast as the SSE2 baseline the plain entry points are built for
// (1 GiB: 0.10 s against 0.19 s on this project's build machine). Same hash values either way.
#include <xxhash.h>
#if defined(__x86_64__)
#include <xxh_x86dispatch.h>
#endif
