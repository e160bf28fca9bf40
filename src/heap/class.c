/* class.c — the size classes' tables (heap.h, "Size classes"; hm_heap_class_of in heap_internal.h). */
#include "heap_internal.h"

/* hm_heap_class_of (heap_internal.h): the class of sizes up to 1 KiB by ceil(size / 16) (0 counts
 * as 1), checked against the formula by tests/heap.c. */
const uint8_t hm_heap_class_table[65] = {0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 12, 12, 13, 13, 13, 13, 14, 14, 14, 14, 15, 15, 15, 15, 16, 16, 16, 16, 16, 16, 16, 16, 17, 17, 17, 17, 17, 17, 17, 17, 18, 18, 18, 18, 18, 18, 18, 18, 19, 19, 19, 19, 19, 19, 19, 19};

/* hm_heap_class_of (heap_internal.h) maps a size to its class; these are the classes' block sizes. */
const uint32_t hm_heap_class_sizes[HM_NCLASS] = {
    16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640, 768, 896, 1024, 1280, 1536, 1792, 2048, 2560, 3072, 3584, 4096, 5120, 6144, 7168, 8192, 10240, 12288, 14336, 16384, 20480, 24576, 28672, 32768,
    40960, 49152, 57344, 65536, 81920, 98304, 114688, 131072, 163840, 196608, 229376, 262144, 327680, 393216, 458752, 524288};

/* The pages a block of each class takes its blocks from: 1 for the small classes; for a medium one
 * (m x 8 KiB) the fewest whole pages that its blocks fill exactly, 8 / gcd(m, 8) blocks of it. */
const uint8_t hm_heap_class_span[HM_NCLASS] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    5, 3, 7, 1, 5, 3, 7, 2, 5, 3, 7, 4, 5, 6, 7, 8};
