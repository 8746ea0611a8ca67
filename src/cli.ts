/**
 * The `griffin` command line.
 *   npx griffin generate --prompt "Once upon a time"
 *   npx griffin convert --from hf-checkpoint/ --out web-model/ --dtype float16
 *   npx griffin serve --port 8080 --max-batch 8
 *
 * Every failure a user can cause ends in one line on stderr and exit code 1 (2 for usage
 * errors), never a stack trace (set GRIFFIN_DEBUG=1 to see one).
 */
import {Command, CommanderError} from 'commander';
import {register as registerBench} from './cli/bench';
import {registerConvert} from './cli/convert';
import {register as registerFinetune} from './cli/finetune';
import {register as registerGenerate} from './cli/generate';
import {register as registerServe} from './cli/serve';
import {registerTrainTokenizer} from './cli/tokenizer';
import {UsageError} from './cli/usage';

export {UsageError};

export function buildProgram(): Command {
  const program = new Command('griffin')
    .description('RecurrentGemma (Griffin) for TensorFlow.js')
    .exitOverride()
    .configureOutput({outputError: (s, write) => write(`${s.trim().split('\n')[0]}\n`)})
    .showSuggestionAfterError(true);
  for (const register of [
    registerConvert,
    registerGenerate,
    registerFinetune,
    registerBench,
    registerTrainTokenizer,
    registerServe,
  ]) {
    register(program);
  }
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, {from: 'user'});
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      // commander already printed its one-line message (or the help / version text).
      return e.exitCode === 0 ? 0 : 2;
    }
    const err = e as Error;
    if (process.env.GRIFFIN_DEBUG) console.error(err.stack);
    else console.error(`griffin: ${(err.message ?? String(err)).split('\n')[0]}`);
    return err instanceof UsageError ? 2 : 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
