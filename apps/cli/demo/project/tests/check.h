#ifndef TEXTKIT_CHECK_H
#define TEXTKIT_CHECK_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define CHECK(cond)                                                   \
  do {                                                                \
    if (!(cond)) {                                                    \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      exit(1);                                                        \
    }                                                                 \
  } while (0)
#define CHECK_STR(got, want) CHECK(strcmp((got), (want)) == 0)
#endif
