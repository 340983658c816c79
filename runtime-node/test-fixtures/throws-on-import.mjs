// A handler module that throws while it is imported (line 3 below).
const settings = { region: undefined };
throw new Error(`no region configured: ${String(settings.region)}`);

export default () => 'never served';
