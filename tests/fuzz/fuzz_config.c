/* fuzz_config.c — config_load on any file.
 *
 * The input is written as conf.yaml in a folder that also holds app.lua,
 * so a well-formed config gets as far as every key's own checks.  Whatever
 * the bytes, config_load returns a config or NULL with a message that
 * names the file, within bounded time (nesting is refused before libyaml
 * builds the document), and a config it returns passes config_validate
 * and is freed without a leak. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

static char dir[64], conf[128], script[128];

static void cleanup(void)
{
    unlink(conf);
    unlink(script);
    rmdir(dir);
}

static void setup(void)
{
    if (dir[0])
        return;
    if (mkdtemp(strcpy(dir, "/tmp/mg-fuzz-config-XXXXXX")) == NULL)
        abort();
    atexit(cleanup);
    char *path = script;
    snprintf(path, sizeof(script), "%s/app.lua", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        abort();
    fputs("function on_message(c, d) c:send(d) end\n", f);
    fclose(f);
    snprintf(conf, sizeof(conf), "%s/conf.yaml", dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup();
    FILE *f = fopen(conf, "wb");
    if (!f)
        abort();
    if (size && fwrite(data, 1, size, f) != size)
        abort();
    fclose(f);
    char err[2048];
    mg_config *cfg = config_load(conf, err, sizeof(err));
    if (!cfg) {
        if (strncmp(err, conf, strlen(conf)) != 0)
            abort(); /* every error names the file */
        return 0;
    }
    char verr[2048];
    (void)config_validate(cfg, verr, sizeof(verr));
    config_free(cfg);
    return 0;
}
