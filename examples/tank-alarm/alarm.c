// Tank alarm: reads the reading that fired the trigger (one JSON record, {"seq":..,"t":..,"v":<level>})
// from reading.json and writes the command for the pump to command.json. argv[1] is the level above
// which the pump runs (default 80).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
  double limit = argc > 1 ? atof(argv[1]) : 80.0;
  FILE *in = fopen("reading.json", "r");
  if (in == NULL) {
    fprintf(stderr, "no reading.json\n");
    return 2;
  }
  char line[4096];
  size_t n = fread(line, 1, sizeof line - 1, in);
  fclose(in);
  line[n] = '\0';
  const char *v = strstr(line, "\"v\":");
  if (v == NULL) {
    fprintf(stderr, "the reading has no value\n");
    return 3;
  }
  double level = atof(v + 4);
  FILE *out = fopen("command.json", "w");
  if (out == NULL) return 4;
  fprintf(out, "{\"pump\":\"%s\",\"level\":%g,\"limit\":%g}", level > limit ? "on" : "off", level, limit);
  fclose(out);
  printf("level %g, limit %g\n", level, limit);
  return 0;
}
