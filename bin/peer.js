#!/usr/bin/env node
// The `peer` command. It needs the Node 24 that `npm ci` installs into
// node_modules/.bin, which `npx peer` and npm scripts put first on PATH.
const major = Number(process.versions.node.split('.')[0])
if (major < 24) {
  process.stderr.write(`peer needs Node.js 24 (this is ${process.version}); run it as \`npx peer\` from the project, which uses the Node 24 installed by npm ci\n`)
  process.exit(1)
}
// Compiled code is cached on disk (the project's node_modules/.cache, the installing user's own): a peer then
// starts with about 0.3 s less CPU, which a swarm of processes on one machine and the tests feel most. Node
// checks each entry against its source, and goes on without the cache where it cannot write there
// (NODE_DISABLE_COMPILE_CACHE=1 turns it off).
const { enableCompileCache } = await import('node:module')
const { fileURLToPath } = await import('node:url')
enableCompileCache?.(fileURLToPath(new URL('../node_modules/.cache/node-compile-cache', import.meta.url)))
const { main } = await import('../node/cli/main.ts')
const code = await main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env, signals: process })
process.exit(code)
