#!/usr/bin/env node
// The `peer` command. It needs the Node 24 that `npm ci` installs into
// node_modules/.bin, which `npx peer` and npm scripts put first on PATH.
const major = Number(process.versions.node.split('.')[0])
if (major < 24) {
  process.stderr.write(`peer needs Node.js 24 (this is ${process.version}); run it as \`npx peer\` from the project, which uses the Node 24 installed by npm ci\n`)
  process.exit(1)
}
const { main } = await import('../node/cli/main.ts')
const code = await main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env, signals: process })
process.exit(code)
