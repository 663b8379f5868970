// Bench plugin, listed after queue/smtp_forward: when smtp_forward cannot
// reach the sink it passes the message on, and Haraka would then put it in its
// own outbound queue for MX delivery (to example.net, off this machine).
// Answer 451 instead, so the client sees the failure and nothing is queued.
'use strict'

exports.hook_queue_outbound = function (next) {
    next(DENYSOFT, 'smart host unavailable; not queued')
}

exports.hook_queue = function (next) {
    next(DENYSOFT, 'smart host unavailable; not queued')
}
