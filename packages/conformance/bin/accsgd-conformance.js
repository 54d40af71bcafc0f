#!/usr/bin/env node
// The committed entry point of the CLI. npm links a workspace package's bin at install time, before
// `npm run build` has written dist/, so `bin` must name a file that is already there.
import '../dist/cli.js';
