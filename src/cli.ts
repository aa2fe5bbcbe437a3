/**
 * The commander program: commands, flags and help text. No logic here: each action hands its
 * flags, typed as declared (@commander-js/extra-typings infers them), to src/commands/<name>.ts.
 * Flags that several commands take are declared once, in src/cli/flags.ts. Commands are imported
 * lazily so `--help` does not load ONNX Runtime or sharp.
 */
import { Command, CommanderError, Option } from '@commander-js/extra-typings';
import { SHARD_FORMATS, TENSOR_DTYPES } from './shard/schema.js';
import { dropOutputAfterClose } from './cli/closed-output.js';
import { DEFAULT_CACHE_DIR, bucketFlags, conversionFlags, inputFlags, listFlag, modelFlag, readFlags, runtimeFlags } from './cli/flags.js';
import { nonNegativeInt, positiveInt, positiveIntOrAuto } from './cli/parsers.js';
import { EXIT, isUserError } from './core/errors.js';
import { DINOFEAT_VERSION } from './core/version.js';

function buildProgram(setExit: (code: number) => void): Command {
  const program = new Command('dinofeat')
    .description('Turn folders of images into a DINOv3 / DINOv2 feature cache for diffusion-model training.')
    .version(DINOFEAT_VERSION, '-V, --version')
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ outputError: (str, write) => write(str.replace(/^error: /, 'dinofeat: ')) })
    // Before any subcommand is added, so they inherit it: parse errors reach main() as exceptions.
    .exitOverride();

  // A flag group adds its flags where it is called: the chain is cut there to keep the help's order.
  const extract = program
    .command('extract')
    .description('extract CLS and patch features of every image into Parquet / Arrow shards (resumable)')
    .argument('[inputs...]', 'image directories (walked recursively), tar shards (.tar, .tar.gz, .tgz) and Parquet files');
  const extractSources = readFlags(listFlag(extract)).option('-o, --out <dir>', 'cache directory', DEFAULT_CACHE_DIR);
  const extractModel = modelFlag(extractSources, 'model.onnx or a Hugging Face checkpoint directory (default: $DINOFEAT_MODEL, then the default pulled model)')
    .option('--patch-size <n>', 'patch size of a foreign ONNX export without dinofeat metadata', positiveInt('--patch-size'))
    .option('--num-registers <n>', 'register tokens of a foreign ONNX export without dinofeat metadata', nonNegativeInt('--num-registers'));
  const extractImages = bucketFlags(extractModel)
    .addOption(new Option('--resize <mode>', 'stretch: whole image to the bucket, no crop; cover: scale to cover and centre-crop').choices(['stretch', 'cover']).default('stretch'))
    .option('--crops <file>', "the trainer's bucket and crop per image instead of dinofeat's rule: dinofeat's JSON Lines (dinofeat crops writes them), kohya's metadata JSON, SimpleTuner's aspect_ratio_bucket_metadata JSON, or a folder of kohya latent caches (*_sdxl.npz)")
    .option('--crops-fallback', "images the --crops file lacks go to dinofeat's buckets (--bucket / --buckets) instead of failing")
    .option('--background <colour>', 'colour that transparent pixels are flattened on', '#ffffff')
    .option('--max-pixels <n>', 'refuse images with more pixels than this before decoding them', positiveInt('--max-pixels'))
    .addOption(new Option('--icc <mode>', 'embedded ICC profiles: ignore (as Hugging Face / PIL do) or convert to sRGB').choices(['ignore', 'convert']).default('ignore'))
    .addOption(new Option('--decode <mode>', 'exact: whole frames, Hugging Face\'s pixels; fast: a JPEG at least three times its bucket\'s size shrinks on load, as sharp\'s thumbnails do (different pixels, recorded in the cache)').choices(['exact', 'fast']).default('exact'))
    .option('--pool <n>', 'store patches averaged NxN on the grid (for a DiT whose token grid is N times coarser); every bucket grid must divide by N', positiveInt('--pool'))
    .option('-b, --batch-size <n>', 'images per inference batch (per bucket), or auto: as many as fit a token budget per device (about 1000 tokens on cpu, 32768 on a GPU); int8 models run one image at a time, so that an image\'s features do not depend on its batch', positiveIntOrAuto('--batch-size'), 'auto' as number | 'auto');
  runtimeFlags(extractImages)
    .option('--decoders <n>', 'images decoded and resized at once (default: one per core, at least 4)', positiveInt('--decoders'))
    .addOption(new Option('--format <format>', 'shard format').choices(SHARD_FORMATS).default('parquet'))
    .addOption(new Option('--dtype <dtype>', 'stored tensor precision').choices(TENSOR_DTYPES).default('float16'))
    .option('--registers', 'also store the register tokens')
    .option('--flip', 'also store the features of the horizontally flipped image (columns flip, cls_flip, patches_flip, registers_flip); needed for a --crops file with "flip": true')
    .option('--shard-size <MiB>', 'start a new shard after this many MiB', positiveInt('--shard-size'), 512)
    .option('--overwrite', 'clear a cache made with another model or preprocessing instead of refusing')
    .option('--retry-failed', 'only re-attempt images listed in errors.jsonl')
    .option('--num-workers <n>', 'split the images over N workers (by container file when there are at least N, else by a hash of the key)', positiveInt('--num-workers'))
    .option('--worker-index <i>', 'this worker (0-based); also read from SLURM / Kubernetes / RANK env', nonNegativeInt('--worker-index'))
    .option('-q, --quiet', 'no progress output, only the summary')
    .option('--dry-run', 'read image headers only and print images per bucket, the bytes the cache will take and a time estimate from a short model probe; writes nothing')
    .addHelpText('after', '\nExit codes: 0 all images extracted, 1 some images failed (see errors.jsonl), 2 usage or setup error, 130 interrupted (rerun to resume).')
    .action(async (inputs, opts) => {
      const { runExtract } = await import('./commands/extract.js');
      setExit(await runExtract(inputs, opts));
    });

  const validate = program
    .command('validate')
    .description('prove a cache (and a model) are right: schema, every row, checksums, duplicates, stale rows, recomputed features, latent alignment')
    .argument('[target]', 'a cache directory or one shard', DEFAULT_CACHE_DIR);
  const validateModel = modelFlag(validate, 'the model to check and recompute rows with (default: the model the cache records, when rows are recomputed)');
  const validateChecks = inputFlags(validateModel, ' (default: the inputs the cache records)')
    .option('--recompute <n>', 're-extract N sampled rows with the model and compare; 0 skips (default: 4 for a cache directory)', nonNegativeInt('--recompute'))
    .option('--seed <s>', 'seed for the --recompute sample', nonNegativeInt('--seed'), 0)
    .option('--latent-stride <s>', 'VAE stride, for the alignment check (e.g. 8)', positiveInt('--latent-stride'))
    .option('--dit-patch <p>', 'DiT patch size, for the alignment check (e.g. 2)', positiveInt('--dit-patch'));
  runtimeFlags(validateChecks)
    .option('--json', 'print the report as JSON')
    .addHelpText('after', '\nEvery image of --images / --list must be in the cache once or in its errors log; changed ones are listed as stale. With no flags, a cache directory is checked against what its extract runs recorded (manifest/inputs-*.json): the images they read, and a few rows recomputed with their model.\nExit codes: 0 every check passed, 1 a check failed (the report names it and what to do), 2 usage error.')
    .action(async (target, opts) => {
      const { runValidate } = await import('./commands/validate.js');
      setExit(await runValidate(target, opts));
    });

  program
    .command('inspect')
    .description('show what a shard or cache holds: summary, one row, or a PCA picture of a row\'s patch features')
    .argument('[target]', 'a shard or a cache directory', DEFAULT_CACHE_DIR)
    .option('--row <n>', 'show this row (0-based)', nonNegativeInt('--row'))
    .option('--key <key>', 'show the row of this image key')
    .option('--pca <out.png>', 'write the input as the model saw it beside a PCA-to-RGB map of its patches')
    .option('--images <dir>', 'where to find the source image for --pca (default: the current directory)')
    .option('--json', 'print as JSON')
    .action(async (target, opts) => {
      const { runInspect } = await import('./commands/inspect.js');
      setExit(await runInspect(target, opts));
    });

  const convert = program
    .command('convert')
    .description('convert a Hugging Face DINOv3 (ViT or ConvNeXt) / DINOv2 checkpoint (config.json + safetensors) to ONNX')
    .argument('<checkpoint-dir>', 'directory with config.json and model.safetensors (or a sharded index)')
    .requiredOption('-o, --out <model.onnx>', 'output ONNX file (weights over 2 GB go to <out>.data beside it)');
  conversionFlags(convert)
    .option('--source-repo <id>', 'Hugging Face repo id to record in the model metadata')
    .action(async (dir, opts) => {
      const { runConvert } = await import('./commands/convert.js');
      setExit(await runConvert(dir, opts));
    });

  const pull = program
    .command('pull')
    .description('download a checkpoint from the Hugging Face Hub, convert it to ONNX and cache it under $DINOFEAT_HOME')
    .argument('<repo-id>', 'e.g. facebook/dinov3-vits16-pretrain-lvd1689m (see dinofeat models)')
    .option('--revision <rev>', 'branch, tag or commit', 'main');
  conversionFlags(pull)
    .option('--default', 'make it the default model even if one exists')
    .addHelpText('after', '\nHF_TOKEN: token for gated repos (DINOv3: accept the licence on the Hub first). HF_ENDPOINT: a mirror. DINOFEAT_HOME: where models go (default ~/.cache/dinofeat).')
    .action(async (repo, opts) => {
      const { runPull } = await import('./commands/pull.js');
      setExit(await runPull(repo, opts));
    });

  program
    .command('crops')
    .description("write each image's bucket and crop box as JSON Lines (the format of extract --crops), for the VAE side to encode exactly what DINO saw")
    .argument('[cache]', 'a cache directory', DEFAULT_CACHE_DIR)
    .option('-o, --out <file>', 'write here instead of stdout')
    .action(async (cache, opts) => {
      const { runCrops } = await import('./commands/crops.js');
      setExit(await runCrops(cache, opts));
    });

  program
    .command('models')
    .description('known DINOv3 / DINOv2 checkpoints and which are pulled here')
    .action(async () => {
      const { formatRegistry } = await import('./store/registry.js');
      process.stdout.write(formatRegistry());
    });

  const buckets = program.command('buckets').description('print the bucket table: trainer size, DINO input, patch grid, tokens');
  modelFlag(bucketFlags(buckets), 'take the patch size from this model')
    .option('--patch-size <n>', 'patch size (default 16, DINOv3)', positiveInt('--patch-size'))
    .action(async (opts) => {
      const { runBuckets } = await import('./commands/buckets.js');
      setExit(await runBuckets(opts));
    });

  const merge = program
    .command('merge')
    .description('build the global manifest of a multi-worker cache; report overlaps, and gaps: images of --images / --list that no worker stored')
    .argument('<cache-dir>', 'the shared output directory');
  inputFlags(merge)
    .action(async (out, opts) => {
      const { runMerge } = await import('./commands/merge.js');
      setExit(await runMerge(out, opts));
    });

  program
    .command('test-model')
    .description('write the small deterministic test model (random weights, NOT a real model) and its ONNX file')
    .argument('<dir>', 'output directory: <dir>/checkpoint and <dir>/model.onnx')
    .addOption(new Option('--size <size>', 'tiny (hidden 64, 2 layers) or vits16 (real ViT-S/16 shapes, 21.6M parameters)').choices(['tiny', 'vits16']).default('tiny'))
    .action(async (dir, opts) => {
      const { runTestModel } = await import('./commands/test-model.js');
      setExit(await runTestModel(dir, opts));
    });

  program
    .command('devices')
    .description('list the execution providers this onnxruntime-node offers and which ones work here')
    .action(async () => {
      const { runDevices } = await import('./commands/devices.js');
      setExit(await runDevices());
    });

  return program;
}

/** Runs the CLI and returns the process exit code. */
export async function main(argv: string[]): Promise<number> {
  dropOutputAfterClose(process.stdout);
  dropOutputAfterClose(process.stderr);
  let code: number = EXIT.ok;
  const program = buildProgram((c) => (code = c));
  try {
    await program.parseAsync(argv);
    return code;
  } catch (e) {
    if (e instanceof CommanderError) {
      // Help and version exit 0; every parse error is a usage error.
      return e.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    if (isUserError(e)) {
      process.stderr.write(`dinofeat: ${e.message}\n`);
      return e.exitCode;
    }
    throw e;
  }
}
