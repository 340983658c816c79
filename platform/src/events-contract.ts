// The gateway <-> CLI contract of POST /system/events/publish (`fn publish`): the JSON answers.

/** A message published without waiting for a reply: the server has it. */
export interface Published {
  subject: string;
  bytes: number;
}

/** The reply to a request (`?reply=true`). */
export interface PublishReply {
  subject: string;
  /** The reply's kubefn-status header as a number, when it has one (a function's HTTP status). */
  status?: number;
  headers: Record<string, string[]>;
  /** UTF-8 text, or base64 when the reply is not valid UTF-8. */
  data: string;
  encoding: 'utf8' | 'base64';
}
