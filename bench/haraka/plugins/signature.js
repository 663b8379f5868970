// Bench plugin: the static signature that altermime adds in the Postfix run.
// Appends config/signature.txt to text/plain parts and config/signature.html
// to text/html parts (Haraka's banner body filter), and adds the header
// "SignatureContoso: true". Both files are written by bench/compare.py from
// examples/fabrikam/default.{txt,html} with the display name "Jane Doe".
'use strict'

exports.register = function () {
    this.load_signature()
}

exports.load_signature = function () {
    const reload = () => this.load_signature()
    this.text = this.config.get('signature.txt', 'binary', reload)?.toString('utf8') ?? ''
    this.html = this.config.get('signature.html', 'binary', reload)?.toString('utf8') ?? ''
    if (!this.text) this.logerror('config/signature.txt is missing or empty')
}

exports.hook_data = function (next, connection) {
    const txn = connection.transaction
    if (txn && this.text) txn.set_banner(this.text, this.html || undefined)
    next()
}

exports.hook_data_post = function (next, connection) {
    connection.transaction?.add_header('SignatureContoso', 'true')
    next()
}
