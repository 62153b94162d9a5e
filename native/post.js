'use strict';
// The native entry's post step: revoke every token the job minted, remove the state.
require('./run.js').run('post');
