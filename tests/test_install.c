/* test_install.c: the library as others link it. libglow.so and libglow.a export only
 * glow_* names, and a program outside the tree builds against an installed copy with
 * pkg-config alone and runs. */
#include <string.h>
#include "test.h"

/* Every defined global name that nm lists for `cmd`, one per line, not starting glow_. */
static int foreign_names(const char *cmd) {
    return test_run("%s | awk 'NF == 3 && $2 ~ /[A-Z]/ {print $3}' | grep -v '^glow_' | "
                    "sort -u | head -20 | grep .", cmd) == 0;
}

TEST(install_exports_only_glow_names) {
    if (IS_DOUBLE) return; /* the float library is the one installed */
    CHECK(test_run("nm -D --defined-only build/libglow.so | grep -c ' glow_model_create$'") == 0,
          "libglow.so does not export glow_model_create: %s", test_output());
    CHECK(!foreign_names("nm -D --defined-only build/libglow.so"), "libglow.so exports: %s",
          test_output());
    CHECK(!foreign_names("nm -g --defined-only build/libglow.a"), "libglow.a exports: %s",
          test_output());
}

TEST(install_pkg_config_program) {
    if (IS_DOUBLE) return;
    const char *dir = test_tmpdir();
    REQUIRE(test_run("make -s install PREFIX=%s/prefix", dir) == 0, "make install: %s", test_output());
    CHECK(test_run("test -f %s/prefix/include/glow.h && test -x %s/prefix/bin/glow && "
                   "test -f %s/prefix/lib/libglow.a && test -L %s/prefix/lib/libglow.so",
                   dir, dir, dir, dir) == 0, "installed files missing");
    REQUIRE(test_run("cp tests/embed/prog.c %s/ && cd %s && PKG_CONFIG_PATH=%s/prefix/lib/pkgconfig "
                     "cc prog.c $(PKG_CONFIG_PATH=%s/prefix/lib/pkgconfig pkg-config --cflags --libs glow) "
                     "-o prog", dir, dir, dir, dir) == 0, "build against the installed library: %s",
            test_output());
    CHECK(test_run("%s/prog", dir) == 0 && strstr(test_output(), "ok: glow " GLOW_VERSION),
          "the program: %s", test_output());
    CHECK(test_run("ldd %s/prog | grep -q '%s/prefix/lib/libglow.so'", dir, dir) == 0,
          "the program is not linked to the installed libglow.so: %s", test_output());
}
