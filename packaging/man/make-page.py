#!/usr/bin/python3
"""Builds one manual page: the prose of packaging/man/PAGE.in with its
@SYNOPSIS@ and @OPTIONS@ lines replaced by sections generated from the
program's own flag table, so that the page and --help cannot disagree.

  make-page.py TEMPLATE OUTPUT VERSION --run PROGRAM [ARG ...]
      runs PROGRAM ARG... (a C++ tool with --man, sigrelay::cli::parser)
      and takes its SYNOPSIS and OPTIONS sections from standard output;
  make-page.py TEMPLATE OUTPUT VERSION --argparse DIR MODULE
      imports MODULE from DIR and renders MODULE.parser(), an argparse
      parser (sigrelay-directory), the same way.

@VERSION@ becomes VERSION and @DATE@ the day of $SOURCE_DATE_EPOCH (empty
without it, so that two builds of one source give the same page)."""
import argparse
import datetime
import importlib
import os
import re
import subprocess
import sys


def escape(text):
    """Running text for roff, as include/sigrelay/roff.hpp does it: \\e for
    a backslash, \\- for every '-', \\% in front of a word that starts
    with '-', "[-" or "(-" (a flag is never hyphenated), \\[uXXXX] for
    anything outside ASCII."""
    out = []
    for i, ch in enumerate(text):
        if (i == 0 or text[i - 1] == " ") and (ch == "-" or (ch in "([\"" and text[i + 1:i + 2] == "-")):
            out.append("\\%")
        if ch == "\\":
            out.append("\\e")
        elif ch == "-":
            out.append("\\-")
        elif ord(ch) >= 0x80:
            out.append("\\[u%04X]" % ord(ch))
        else:
            out.append(ch)
    return "".join(out)


def lines(text):
    """Text as roff input lines: a line starting with '.' or "'" would be a
    request and gets \\& in front; an empty line becomes a paragraph break."""
    out = []
    for line in text.strip("\n").split("\n"):
        line = line.strip()
        if not line:
            out.append(".PP")
            continue
        out.append(("\\&" if line[0] in ".'" else "") + escape(line))
    return "\n".join(out) + "\n"


def bold(s):
    return "\\fB" + escape(s) + "\\fR"


def italic(s):
    return "\\fI" + escape(s) + "\\fR"


def value_names(action):
    """What follows the flag, as argparse writes it in --help."""
    name = action.metavar or action.dest.upper()
    n = action.nargs
    if n == 0:
        return ""
    if n is None:
        return italic(name)
    if n == "?":
        return "[" + italic(name) + "]"
    if n == "*":
        return "[" + italic(name) + " ...]"
    if n == "+":
        return italic(name) + " [" + italic(name) + " ...]"
    return " ".join([italic(name)] * int(n))


def action_entry(parser, action):
    tag = ", ".join(bold(o) for o in action.option_strings)
    if not tag:
        tag = italic(action.metavar or action.dest)
    else:
        vals = value_names(action)
        if vals:
            tag += " " + vals
    text = action.help or ""
    if "%(" in text:
        text = text % dict(vars(action), prog=parser.prog)
    notes = []
    for group in parser._mutually_exclusive_groups:
        if action in group._group_actions:
            others = [a.option_strings[0] for a in group._group_actions]
            notes.append(("Exactly one" if group.required else "At most one") + " of " +
                         ", ".join(others) + ".")
    if action.required and action.option_strings:
        notes.append("Required.")
    if isinstance(action, argparse._AppendAction) and "repeatable" not in text:
        notes.append("Repeatable.")
    if text and notes and not text.endswith("."):
        text += "."
    return ".TP\n" + tag + "\n" + lines(" ".join([text] + notes).strip())


def subcommands(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield name, sub, helps.get(name, "")


def usage_line(parser, top):
    """argparse's own usage line as a .SY/.YS block (a hanging indent under
    the program's name, not adjusted), the subcommand in bold."""
    text = " ".join(parser.format_usage().split())
    text = text[len("usage: "):] if text.startswith("usage: ") else text
    rest = text[len(parser.prog):] if text.startswith(parser.prog) else " " + text
    sub = parser.prog[len(top.prog):].strip()
    return (".SY " + escape(top.prog) + "\n" + (bold(sub) + "\n" if sub else "") +
            lines(rest.strip()) + ".YS\n")


def render_argparse(parser):
    out = [".SH SYNOPSIS\n"]
    subs = list(subcommands(parser))
    for _name, sub, _help in subs or [(None, parser, None)]:
        out.append(usage_line(sub, parser))
    out.append(".SH OPTIONS\n")
    for action in parser._actions:
        if action.option_strings and action.help != argparse.SUPPRESS:
            out.append(action_entry(parser, action))
    for name, sub, summary in subs:
        out.append(".SS " + escape(name) + "\n")
        out.append(lines(sub.description or summary or ""))
        for action in sub._actions:
            if action.help != argparse.SUPPRESS:
                out.append(action_entry(sub, action))
        if sub.epilog:
            # Examples as written, line for line, in no-fill mode.
            out.append(".PP\n.nf\n")
            for line in sub.epilog.strip("\n").split("\n"):
                out.append(("\\&" if line[:1] in (".", "'") else "") + escape(line) + "\n")
            out.append(".fi\n")
    return "".join(out)


def generated_sections(args):
    if args.run:
        p = subprocess.run(args.run, stdout=subprocess.PIPE, check=True, text=True)
        return p.stdout
    directory, module = args.argparse
    sys.path.insert(0, os.path.abspath(directory))
    sys.dont_write_bytecode = True  # nothing written into the source tree
    return render_argparse(importlib.import_module(module).parser())


def build(template, generated, version, date):
    head, sep, options = generated.partition("\n.SH OPTIONS\n")
    if not sep or not head.startswith(".SH SYNOPSIS\n"):
        raise SystemExit("make-page.py: the program's output has no SYNOPSIS and OPTIONS sections")
    parts = {"@SYNOPSIS@": head + "\n", "@OPTIONS@": ".SH OPTIONS\n" + options,
             "@VERSION@": version, "@DATE@": date}
    for key in ("@SYNOPSIS@", "@OPTIONS@"):
        if template.count("\n" + key + "\n") != 1:
            raise SystemExit(f"make-page.py: the template needs {key} once, on a line of its own")
    page = template
    for key in ("@SYNOPSIS@", "@OPTIONS@"):
        page = page.replace(key + "\n", parts[key])
    page = page.replace("@VERSION@", version).replace("@DATE@", date)
    left = re.findall(r"@[A-Z_]+@", page)
    if left:
        raise SystemExit("make-page.py: unknown placeholders " + ", ".join(sorted(set(left))))
    return page


def main():
    ap = argparse.ArgumentParser(prog="make-page.py")
    ap.add_argument("template")
    ap.add_argument("output")
    ap.add_argument("version")
    how = ap.add_mutually_exclusive_group(required=True)
    how.add_argument("--run", nargs=argparse.REMAINDER)
    how.add_argument("--argparse", nargs=2, metavar=("DIR", "MODULE"))
    args = ap.parse_args()
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    date = (datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc).strftime("%Y-%m-%d")
            if epoch else "")
    with open(args.template, encoding="utf-8") as f:
        template = f.read()
    page = build(template, generated_sections(args), args.version, date)
    tmp = args.output + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(page)
    os.replace(tmp, args.output)


if __name__ == "__main__":
    main()
