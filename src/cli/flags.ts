/**
 * Flag groups that several commands take, declared once so their names, help and defaults cannot
 * drift apart. Each adds its flags to a command and returns it with their types added, so an
 * action's options stay inferred from what was declared.
 */
import { Option, type Command, type OptionValues } from '@commander-js/extra-typings';
import { PRECISIONS } from '../model/info.js';
import { NORM_PRESET_NAMES } from '../model/normalisation.js';
import { blockList, collect, positiveInt, positiveNumber, rgbTriple } from './parsers.js';

/** Where extract writes, and what validate and inspect read, when no cache is named. */
export const DEFAULT_CACHE_DIR = './dinofeat-cache';

/** The bucket sizes and the DINO input scale (extract, buckets). */
export function bucketFlags<A extends unknown[], O extends OptionValues, G extends OptionValues>(cmd: Command<A, O, G>) {
  return cmd
    .option('--bucket <WxH>', 'a bucket size (repeatable); one bucket sends every image there', collect)
    .option('--buckets <preset>', 'bucket preset: sdxl, sd15, or auto (see dinofeat buckets)')
    .option('--bucket-area <pixels>', 'target area for --buckets auto', positiveInt('--bucket-area'))
    .option('--bucket-step <n>', 'size step for --buckets auto (a multiple of the patch size)', positiveInt('--bucket-step'))
    .option('--bucket-min <n>', 'smallest side for --buckets auto', positiveInt('--bucket-min'))
    .option('--bucket-max <n>', 'largest side for --buckets auto', positiveInt('--bucket-max'))
    .option('--dino-scale <s>', 'run DINO at this fraction of the bucket size (rounded to the patch size)', positiveNumber('--dino-scale'), 1);
}

/** --model: the same flag everywhere; what the command does with the model is its own help. */
export function modelFlag<A extends unknown[], O extends OptionValues, G extends OptionValues>(cmd: Command<A, O, G>, help: string) {
  return cmd.option('-m, --model <path>', help);
}

/** Where and how ONNX Runtime runs the model (extract, validate). */
export function runtimeFlags<A extends unknown[], O extends OptionValues, G extends OptionValues>(cmd: Command<A, O, G>) {
  return cmd
    .option('--device <name>', 'execution provider: cpu, cuda, cuda:N for card N, ... (see dinofeat devices); without a card, cuda takes the card of LOCAL_RANK / SLURM_LOCALID', 'cpu')
    .option('--threads <n>', 'ONNX Runtime threads for inference (default: all cores)', positiveInt('--threads'));
}

/** Image lists, as extract reads them (extract, validate, merge). */
export function listFlag<A extends unknown[], O extends OptionValues, G extends OptionValues>(cmd: Command<A, O, G>, note = '') {
  return cmd.option('--list <file>', `file with one image path per line (- for stdin); repeatable${note}`, collect);
}

/** How inputs are read into keys (extract; validate and merge, to read them the same way). */
export function readFlags<A extends unknown[], O extends OptionValues, G extends OptionValues>(cmd: Command<A, O, G>) {
  return cmd
    .option('--key-prefix <str>', 'put this before every key of the inputs (namespaces datasets that share names)')
    .option('--image-ext <list>', 'tar shards: extensions of a sample\'s image member, best first (default jpg,jpeg,png,webp,gif,tif,tiff,avif)')
    .option('--image-column <name>', 'Parquet: the image column (default: a struct column image with a bytes field, else the only binary column)')
    .option('--key-column <name>', 'Parquet: take keys from this column (default: <file name>/<row number>)');
}

/** The images extract read, for a command that compares a cache with them (validate, merge). */
export function inputFlags<A extends unknown[], O extends OptionValues, G extends OptionValues>(cmd: Command<A, O, G>, note = '') {
  return readFlags(listFlag(cmd.option('--images <path>', `image directory, tar shard or Parquet file extract read; repeatable${note}`, collect), note));
}

/** What a checkpoint is converted to (convert, pull): weights, extra layer outputs, normalisation. */
export function conversionFlags<A extends unknown[], O extends OptionValues, G extends OptionValues>(cmd: Command<A, O, G>) {
  return cmd
    .addOption(new Option('--precision <p>', 'weights: fp32 (reference), fp16, int8 (dynamic quantisation), int4 (weight-only)').choices(PRECISIONS).default('fp32'))
    .option('--layers <k,...>', "also output the hidden state after these blocks (counted from 1) through the final norm, as Meta's get_intermediate_layers(norm=True); extract stores them as layer<k>_cls / layer<k>_patches", blockList('--layers'))
    .addOption(new Option('--norm <preset>', "pixel mean/std instead of the checkpoint's preprocessor config: imagenet, or sat493m for the satellite checkpoints (see README)").choices(NORM_PRESET_NAMES))
    .option('--image-mean <r,g,b>', "pixel mean instead of the checkpoint's preprocessor config", rgbTriple('--image-mean', false))
    .option('--image-std <r,g,b>', "pixel std instead of the checkpoint's preprocessor config", rgbTriple('--image-std', true));
}
