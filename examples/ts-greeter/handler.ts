// Greets in several languages; shows init(), typed handlers and the call context.

interface Context {
  functionName: string;
  callId: string;
  signal: AbortSignal;
  logger: { info(msg: string, fields?: Record<string, unknown>): void };
}

type Greeting = { language: string; text: string };

let greetings: Map<string, string>;

/** Runs once per replica before it takes traffic. */
export function init(): void {
  greetings = new Map([
    ['en', 'Hello'],
    ['fr', 'Bonjour'],
    ['de', 'Hallo'],
    ['ja', 'こんにちは'],
  ]);
}

export default function greet(request: Request, context: Context): Greeting {
  const url = new URL(request.url);
  const language = url.searchParams.get('lang') ?? 'en';
  const name = url.searchParams.get('name') ?? 'world';
  const word = greetings.get(language) ?? greetings.get('en')!;
  context.logger.info('greeted', { language });
  return { language, text: `${word}, ${name}!` };
}
