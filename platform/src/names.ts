// Function and secret names: DNS-1123 labels, checked the same way by the spec schema, the routes and the CLI.

import { KubefnError } from './errors.js';

export const namePattern = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$';

const nameRegExp = new RegExp(namePattern);

/** Checks one function (or secret) name, for routes and CLI arguments. */
export function validateName(name: string, what: 'function' | 'secret' = 'function'): void {
  if (name.length === 0 || name.length > 63 || !nameRegExp.test(name)) {
    throw new KubefnError('INVALID_NAME', `invalid ${what} name ${JSON.stringify(name)}`, {
      hint: 'use 1-63 lower-case letters, digits and "-", starting and ending with a letter or digit (e.g. "hello-world")',
    });
  }
}
