/**
 * A reader that stops early (`dinofeat extract --help | head`) closes the pipe, and the next write
 * fails with EPIPE, emitted as an 'error' event that would end the process with a stack trace.
 * The reader has what it wanted: further output to that stream is dropped and the command ends
 * with its own exit code. Any other stream error is still thrown.
 */
const watched = new WeakSet<NodeJS.WriteStream>();

export function dropOutputAfterClose(stream: NodeJS.WriteStream): void {
  if (watched.has(stream)) return; // main() may run more than once in one process (tests)
  watched.add(stream);
  stream.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code !== 'EPIPE') throw e;
  });
}
