'use strict';
// The native entry's main step: mint, mask, export, install the git credential helper.
require('./run.js').run('main');
