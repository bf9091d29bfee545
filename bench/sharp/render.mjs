// The sharp contender of benchmark 1 (bench/derivatives.py), as a long-lived child process.
//
// One request per line on stdin (JSON), one answer per line on stdout:
//   {"input": "/path/photo.jpg", "outDir": "/tmp/x" | null}
//   -> {"seconds": 0.071, "cpuSeconds": 0.07, "outputs": [{"size": "large", "width": 1200, "height": 800,
//                                      "bytes": 123456, "path": "/tmp/x/large.jpg"}, ...]}
//   -> {"error": "..."} when sharp cannot do it (e.g. HEIC: its prebuilt libvips has no HEVC)
// The input file is read once and kept in memory, so the timed part is the same as the
// Python contenders': encoded bytes in memory -> four encoded JPEGs in memory.
//
// The pipeline: one decode with shrink-on-load, EXIF orientation applied, resized to the
// largest width (`large`), kept as raw pixels; every size is then made from those pixels
// (1200 is encoded as is, 800/400/200 resized from them). JPEG quality 85, sharp's other
// defaults (what AWS's Serverless Image Handler runs). One thread: sharp.concurrency(1) and
// UV_THREADPOOL_SIZE=1 (set by the parent), as a worker renders one photo per core.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import sharp from "sharp";

const SIZES = [
  ["large", 1200],
  ["medium", 800],
  ["small", 400],
  ["thumbnail", 200],
];
const QUALITY = 85;

sharp.concurrency(1);
sharp.cache(false); // every run decodes its input, like the Python contenders do

// Seconds of each stage of the last render: "decode+resize" (to `large`, raw pixels), then
// one "resize+encode <size>" per size.
let stages = {};

function since(started) {
  return Number(process.hrtime.bigint() - started) / 1e9;
}

async function render(input) {
  const largest = SIZES[0][1];
  stages = {};
  let started = process.hrtime.bigint();
  const { data, info } = await sharp(input)
    .rotate() // EXIF orientation
    .resize({ width: largest, withoutEnlargement: true })
    .toColourspace("srgb")
    .raw()
    .toBuffer({ resolveWithObject: true });
  stages["decode+resize"] = since(started);
  const raw = { raw: { width: info.width, height: info.height, channels: info.channels } };
  const outputs = [];
  for (const [size, width] of SIZES) {
    started = process.hrtime.bigint();
    let image = sharp(data, raw);
    if (width < info.width) {
      image = image.resize({ width });
    }
    const out = await image.jpeg({ quality: QUALITY }).toBuffer({ resolveWithObject: true });
    stages[`resize+encode ${size}`] = since(started);
    outputs.push({ size, width: out.info.width, height: out.info.height, data: out.data });
  }
  return outputs;
}

const inputs = new Map();

async function handle(line) {
  const request = JSON.parse(line);
  if (!inputs.has(request.input)) {
    inputs.set(request.input, readFileSync(request.input));
  }
  const input = inputs.get(request.input);
  const cpuStarted = process.cpuUsage();
  const started = process.hrtime.bigint();
  let outputs;
  try {
    outputs = await render(input);
  } catch (error) {
    return { error: String(error && error.message ? error.message : error) };
  }
  const seconds = since(started);
  const cpu = process.cpuUsage(cpuStarted);
  return {
    seconds,
    cpuSeconds: (cpu.user + cpu.system) / 1e6, // every thread of the process (libuv's too)
    stages,
    outputs: outputs.map((o) => {
      let path = null;
      if (request.outDir) {
        path = join(request.outDir, `${o.size}.jpg`);
        writeFileSync(path, o.data);
      }
      return { size: o.size, width: o.width, height: o.height, bytes: o.data.length, path };
    }),
  };
}

const versions = { ...sharp.versions, concurrency: sharp.concurrency(), simd: sharp.simd() };
process.stdout.write(JSON.stringify({ ready: true, versions }) + "\n");
const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (line.trim()) {
    process.stdout.write(JSON.stringify(await handle(line)) + "\n");
  }
}
