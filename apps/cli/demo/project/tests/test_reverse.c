#include "../tests/check.h"
#include "textkit/reverse.h"

int main(void) {
  char a[] = "hello";
  CHECK_STR(tk_reverse(a), "olleh");
  char b[] = "";
  CHECK_STR(tk_reverse(b), "");
  char c[] = "ab";
  CHECK_STR(tk_reverse(c), "ba");
  return 0;
}
