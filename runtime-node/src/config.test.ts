import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, configFromEnv, resolveConfig } from './config.js';

describe('configFromEnv', () => {
  it('applies the documented defaults', () => {
    const config = configFromEnv({ KUBEFN_INSTANCE: 'r1' });
    assert.deepEqual(config, {
      port: 8080,
      adminPort: 8081,
      host: '0.0.0.0',
      functionName: 'function',
      instance: 'r1',
      timeoutMs: 30_000,
      concurrency: 0,
      drainMs: 35_000,
      drainLingerMs: 500,
      maxBodyBytes: 6 * 1024 * 1024,
      logLevel: 'info',
    });
  });

  it('reads every variable of the runtime contract', () => {
    const config = configFromEnv({
      PORT: '0',
      ADMIN_PORT: '9091',
      KUBEFN_HOST: '127.0.0.1',
      KUBEFN_FUNCTION: 'hello',
      KUBEFN_INSTANCE: 'hello-abc',
      KUBEFN_TIMEOUT_MS: '1000',
      KUBEFN_CONCURRENCY: '4',
      KUBEFN_MAX_BODY_BYTES: '1024',
      KUBEFN_LOG_LEVEL: 'DEBUG',
    });
    assert.equal(config.port, 0);
    assert.equal(config.adminPort, 9091);
    assert.equal(config.host, '127.0.0.1');
    assert.equal(config.functionName, 'hello');
    assert.equal(config.instance, 'hello-abc');
    assert.equal(config.timeoutMs, 1000);
    assert.equal(config.concurrency, 4);
    assert.equal(config.drainMs, 6000, 'drain defaults to timeout + 5000 ms');
    assert.equal(config.maxBodyBytes, 1024);
    assert.equal(config.logLevel, 'debug');
    assert.equal(configFromEnv({ KUBEFN_DRAIN_MS: '50' }).drainMs, 50);
    assert.equal(configFromEnv({ KUBEFN_DRAIN_LINGER_MS: '0' }).drainLingerMs, 0);
  });

  it('rejects bad values, naming each variable', () => {
    assert.throws(
      () => configFromEnv({ PORT: 'eighty', KUBEFN_CONCURRENCY: '-1', KUBEFN_LOG_LEVEL: 'loud' }),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.match(err.message, /PORT="eighty"/);
        assert.match(err.message, /KUBEFN_CONCURRENCY="-1"/);
        assert.match(err.message, /KUBEFN_LOG_LEVEL="loud"/);
        return true;
      },
    );
    assert.throws(() => configFromEnv({ KUBEFN_TIMEOUT_MS: '0' }), /KUBEFN_TIMEOUT_MS/);
  });
});

describe('resolveConfig', () => {
  it('validates options given in code', () => {
    assert.throws(() => resolveConfig({ port: 70000 }), /port must be an integer/);
    assert.equal(resolveConfig({ timeoutMs: 100 }).drainMs, 5100);
  });
});
