// NATS subjects: what a trigger may subscribe to and what may be published to.

/**
 * Why `subject` is not a NATS subject, or undefined when it is one: tokens separated by ".",
 * none empty, no white space; a subscription may use "*" as a whole token and ">" as the last,
 * a publish subject neither.
 */
export function subjectProblem(subject: string, wildcards: boolean): string | undefined {
  if (/\s/.test(subject)) return `must not contain white space (got ${JSON.stringify(subject)})`;
  const tokens = subject.split('.');
  if (tokens.some((tok) => tok === '')) return `must be tokens separated by single dots, none empty (got ${JSON.stringify(subject)})`;
  for (const [k, tok] of tokens.entries()) {
    const wild = tok.includes('*') || tok.includes('>');
    if (!wild) continue;
    if (!wildcards) return `is a subject to publish to, so it takes no wildcard "*" or ">" (got ${JSON.stringify(subject)})`;
    if (tok !== '*' && tok !== '>') return `may use "*" and ">" only as whole tokens (got ${JSON.stringify(subject)})`;
    if (tok === '>' && k !== tokens.length - 1) return `may use ">" only as the last token (got ${JSON.stringify(subject)})`;
  }
  return undefined;
}

/** Whether the subscription `pattern` receives messages published to `subject`. */
export function subjectMatches(pattern: string, subject: string): boolean {
  const p = pattern.split('.');
  const s = subject.split('.');
  for (let k = 0; k < p.length; k++) {
    if (p[k] === '>') return s.length > k;
    if (k >= s.length || (p[k] !== '*' && p[k] !== s[k])) return false;
  }
  return p.length === s.length;
}
