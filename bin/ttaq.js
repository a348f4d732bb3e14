#!/usr/bin/env node
// The `ttaq` command. The project is TypeScript run through tsx's loader, so a checkout works
// without a separate build step (the same sources run on a workstation and on a Jetson).
import { register } from 'tsx/esm/api';

register();
await import('../tools/ttaq.ts');
