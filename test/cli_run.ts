/**
 * Runs the `griffin` command in the test's own process (src/cli.ts main), catching what it writes
 * on stderr, failures included (src/cli.ts writes them with console.error).
 *   const {code, stderr} = await runGriffin(['convert', '--from', dir, '--out', out]);
 */
import {main as griffin} from '../src/cli';

/** Exit code and stderr of `griffin ...args`. */
export async function runGriffin(args: string[]): Promise<{code: number; stderr: string}> {
  let stderr = '';
  const spies = [
    jest.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => {
      stderr += String(s);
      return true;
    }),
    jest.spyOn(console, 'error').mockImplementation((...a: unknown[]) => {
      stderr += `${a.join(' ')}\n`;
    }),
  ];
  try {
    return {code: await griffin(args), stderr};
  } finally {
    for (const s of spies) s.mockRestore();
  }
}
