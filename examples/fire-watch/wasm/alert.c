// Decides whether a district needs a fire alert. Reads "... max=B ..." from input/stats.txt (the stats
// job's named result) and compares it with the threshold in argv[1] (default 60). The district name comes
// from the DISTRICT environment variable. Writes the decision to out.txt and stdout; exits 0 either way.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
  double threshold = argc > 1 ? atof(argv[1]) : 60.0;
  const char *district = getenv("DISTRICT");
  if (district == NULL) district = "unknown";
  FILE *in = fopen("input/stats.txt", "r");
  if (in == NULL) {
    perror("alert: input/stats.txt");
    return 2;
  }
  char text[256] = {0};
  size_t len = fread(text, 1, sizeof text - 1, in);
  fclose(in);
  text[len] = '\0';
  const char *at = strstr(text, "max=");
  if (at == NULL) {
    fprintf(stderr, "alert: no max= in the stats\n");
    return 4;
  }
  double max = atof(at + 4);
  char decision[160];
  if (max >= threshold)
    snprintf(decision, sizeof decision, "ALERT district %s: max %.1f C >= %.1f C\n", district, max, threshold);
  else
    snprintf(decision, sizeof decision, "ok district %s: max %.1f C < %.1f C\n", district, max, threshold);
  FILE *out = fopen("out.txt", "w");
  if (out == NULL) {
    perror("alert: out.txt");
    return 3;
  }
  fputs(decision, out);
  fclose(out);
  fputs(decision, stdout);
  return 0;
}
