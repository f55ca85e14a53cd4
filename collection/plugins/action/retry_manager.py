# -*- coding: utf-8 -*-
# Copyright: retryx developers
# MIT License (see the repository's Cargo.toml)
"""Controller side of retry_manager: runs the module from one verified copy kept on the host.

Ansible's plain path for a binary module copies the whole binary to the host on every task and
spends several round trips around it (mkdir, put, chmod, exec, rm). This plugin keeps one copy
per host and remote user, named by its sha256 in a 0700 directory
(``~/.ansible/retryx/retry_manager-<sha256>``), checks that digest before every run, never runs a
copy whose digest differs, sends the binary only when the copy is missing or different, and runs
it in ONE round trip: a POSIX sh script on the command line (no secret in it) and the module's
args on stdin (``retry_manager -``, so secrets stay out of argv and off the disk).

What it must not do: build a result of its own (the module's JSON is the result; the plugin only
answers for a host it cannot serve: another OS or architecture), or run anything it did not verify.
It falls back to Ansible's plain module path for async tasks, connections without stdin
(pipelining) support, become methods that cannot pipe (su), hosts without a sha256 tool or a
usable home directory, and when ``retryx_module_cache: false`` is set for the host.

The one source file is ``collection/plugins/action/retry_manager.py``; ``make build`` copies it
to ``roles/retry_manager/action_plugins/`` and ``make collection`` into the collection.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex

from ansible import constants as C
from ansible.errors import AnsibleError
from ansible.module_utils.common.text.converters import to_bytes, to_text
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display
from ansible.utils.vars import merge_hash

try:  # ansible-core >= 2.19: the encoder the plain path uses for a binary module's args
    from ansible.module_utils.common.json import Direction, get_module_encoder

    def _encode_args(args):
        return json.dumps(args, cls=get_module_encoder("legacy", Direction.CONTROLLER_TO_MODULE))

except ImportError:  # older cores: plain JSON, as their _execute_module wrote the args file

    def _encode_args(args):
        return json.dumps(args)


display = Display()

# Where the copy is kept, relative to the remote user's home (Ansible keeps its own per-user
# state under ~/.ansible too). One file: retry_manager-<sha256>.
CACHE_DIR = ".ansible/retryx"
MARK = "RETRYX-ACTION-PLUGIN:"

# ELF e_machine -> the `uname -m` names of hosts that run it.
_MACHINES = {
    0x3E: ("x86_64", ("x86_64", "amd64")),
    0xB7: ("aarch64", ("aarch64", "arm64", "aarch64_be")),
    0x28: ("arm", ("armv6l", "armv7l", "armv7", "armv8l", "arm")),
    0x03: ("i386", ("i386", "i486", "i586", "i686")),
    0xF3: ("riscv64", ("riscv64",)),
    0x15: ("ppc64", ("ppc64", "ppc64le")),
    0x16: ("s390x", ("s390x",)),
}

# The remote half. POSIX sh, no Python. $HOME is the (become) user's: sudo -H sets it.
# The digest tool: openssl first (it uses the CPU's SHA instructions: 10 ms of CPU for 10 MB
# where coreutils' sha256sum takes 40 ms), else coreutils, else perl's shasum (BSDs, macOS).
_PRELUDE = r"""
umask 077
h() { if command -v openssl >/dev/null 2>&1; then openssl dgst -sha256 -r "$1"
  elif command -v sha256sum >/dev/null 2>&1; then sha256sum "$1"
  elif command -v shasum >/dev/null 2>&1; then shasum -a 256 "$1"
  else return 127; fi; }
m() { printf '%s %s\n' "$MARK" "$*"; }
case "$(uname -sm 2>/dev/null)" in $PLATFORMS) ;; *) m platform "$(uname -sm 2>/dev/null)"; exit 0;; esac
[ -n "${HOME:-}" ] && [ -d "$HOME" ] || { m unusable "no home directory (HOME=${HOME:-unset})"; exit 0; }
d="$HOME/$CACHE_DIR"; f="$d/retry_manager-$DIGEST"
"""

_RUN = r"""
if [ ! -e "$f" ]; then m missing; exit 0; fi
# only the owner may write the directory from here on, so the copy checked is the copy run
chmod 0700 "$d" 2>/dev/null && [ -O "$d" ] && [ ! -L "$d" ] || { m unusable "$d is not a directory of $(id -un 2>/dev/null)"; exit 0; }
s=$(h "$f" 2>/dev/null) || { m nohash; exit 0; }
if [ "${s%% *}" != "$DIGEST" ] || [ -L "$f" ] || [ ! -O "$f" ]; then rm -f "$f"; m replaced "${s%% *}"; exit 0; fi
$ENV "$f" -
"""

_INSTALL = r"""
mkdir -p "$d" 2>/dev/null; chmod 0700 "$d" 2>/dev/null
[ -d "$d" ] && [ -O "$d" ] && [ ! -L "$d" ] || { cat >/dev/null; m unusable "cannot make $d"; exit 0; }
t="$d/.incoming.$$"; rm -f "$t"
cat >"$t" || { rm -f "$t"; m unusable "cannot write $t"; exit 0; }
s=$(h "$t" 2>/dev/null) || { rm -f "$t"; m nohash; exit 0; }
[ "${s%% *}" = "$DIGEST" ] || { rm -f "$t"; m corrupt "${s%% *}"; exit 0; }
chmod 0700 "$t" && mv -f "$t" "$f" || { rm -f "$t"; m unusable "cannot place $f"; exit 0; }
# one copy per host and user: older versions go
for o in "$d"/retry_manager-*; do [ "$o" = "$f" ] || rm -f "$o"; done
m installed
"""


def _elf_platform(path):
    """(machine name, uname -m names) the binary at path is built for, or None if not ELF."""
    with open(path, "rb") as fh:
        head = fh.read(20)
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    little = head[5] == 1
    machine = int.from_bytes(head[18:20], "little" if little else "big")
    name, unames = _MACHINES.get(machine, ("machine 0x%x" % machine, ()))
    if machine == 0x15 and little:
        name, unames = "ppc64le", ("ppc64le",)
    return name, unames


def _sha256(path):
    """The module's digest. Hashing 10 MB costs 10-70 ms, and every task runs in a fresh worker
    process, so it is remembered in the run's private local temp dir (0700, made by the main
    process before the workers fork, removed at exit), keyed by the file's identity."""
    st = os.stat(path)
    key = "%s:%d:%d:%d:%d" % (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    memo = None
    local_tmp = getattr(C, "DEFAULT_LOCAL_TMP", None)
    if local_tmp and os.path.isdir(local_tmp):
        name = "retryx-sha256-" + hashlib.sha256(to_bytes(key, errors="surrogate_or_strict")).hexdigest()[:32]
        memo = os.path.join(local_tmp, name)
        try:
            with open(memo, "r") as fh:
                known = fh.read().strip()
            if re.fullmatch(r"[0-9a-f]{64}", known):
                return known
        except OSError:
            pass
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    known = digest.hexdigest()
    if memo:
        try:
            fd = os.open(memo + ".%d" % os.getpid(), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(known)
            os.rename(memo + ".%d" % os.getpid(), memo)
        except OSError:
            pass
    return known


class ActionModule(ActionBase):
    _supports_check_mode = True
    _supports_async = True

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        task_vars = task_vars or {}
        reason = self._plain_path_reason(task_vars)
        if reason is None:
            module_path = self._module_path()
            platform = _elf_platform(module_path)
            if platform is None:
                reason = "%s is not an ELF binary" % module_path
        if reason is not None:
            display.vvv("retry_manager: the plain module path (%s)" % reason, host=self._host())
            return merge_hash(result, self._plain(task_vars))
        digest = _sha256(module_path)
        data = self._cached_run(module_path, digest, platform, task_vars)
        if data is None:
            return merge_hash(result, self._plain(task_vars))
        return merge_hash(result, data)

    def _host(self):
        return self._play_context.remote_addr

    # -- when the cache is not used -------------------------------------------------------
    def _plain_path_reason(self, task_vars):
        if self._task.async_val:
            return "async"
        opt = task_vars.get("retryx_module_cache", True)
        if isinstance(opt, str):
            opt = opt.strip().lower() not in ("0", "false", "no", "off")
        if not opt:
            return "retryx_module_cache is off"
        if getattr(self._connection._shell, "SHELL_FAMILY", "sh") != "sh":
            return "the host's shell is %s, not POSIX sh" % self._connection._shell.SHELL_FAMILY
        if not getattr(self._connection, "has_pipelining", False):
            return "the connection %s cannot pipe stdin" % self._connection.transport
        become = self._connection.become
        if become is not None and not getattr(become, "pipelining", True):
            return "become method %s cannot pipe stdin" % become.name
        return None

    def _plain(self, task_vars):
        wrap_async = self._task.async_val and not self._connection.has_native_async
        try:
            return self._execute_module(task_vars=task_vars, wrap_async=wrap_async)
        finally:
            if not wrap_async:
                self._remove_tmp_path(self._connection._shell.tmpdir)

    def _module_path(self):
        found = self._shared_loader_obj.module_loader.find_plugin_with_context(
            self._task.action, "", collection_list=self._task.collections
        )
        if not found.resolved or not found.plugin_resolved_path:
            raise AnsibleError(
                "the module %s was not found: run `make build` (roles/) or install the "
                "retryx.core collection" % self._task.action
            )
        return found.plugin_resolved_path

    # -- the cached copy ------------------------------------------------------------------
    def _script(self, body, digest, platform, env=""):
        unames = platform[1] or ("-",)
        patterns = "|".join('"Linux %s"' % u for u in unames)
        text = (_PRELUDE + body).replace("$PLATFORMS", patterns)
        text = text.replace("$ENV ", env + " " if env else "")
        head = "MARK=%s; CACHE_DIR=%s; DIGEST=%s\n" % (
            shlex.quote(MARK), shlex.quote(CACHE_DIR), digest,
        )
        return head + text

    def _exec(self, script, in_data):
        return self._low_level_execute_command(script, sudoable=True, in_data=in_data)

    @staticmethod
    def _mark(res):
        """The plugin's own answer from the remote script, or None when the module ran."""
        out = to_text(res.get("stdout", ""), errors="surrogate_or_strict")
        if out.startswith(MARK):
            word, _, detail = out[len(MARK):].strip().partition(" ")
            return word, detail.strip()
        return None

    def _cached_run(self, module_path, digest, platform, task_vars):
        """The module's result, or None to fall back to the plain path."""
        module_args = self._task.args.copy()
        self._update_module_args(self._task.action, module_args, task_vars)
        args = to_bytes(_encode_args(module_args), errors="surrogate_or_strict")
        env = self._compute_environment_string()
        run_script = self._script(_RUN, digest, platform, env)
        for round_ in range(2):
            res = self._exec(run_script, args)
            mark = self._mark(res)
            if mark is None:
                return self._module_result(res)
            word, detail = mark
            if word == "platform":
                return {
                    "failed": True,
                    "msg": "retry_manager is a static Linux %s binary (%s); this host is %s: build "
                    "retryx for the host's target and put it at %s"
                    % (platform[0], module_path, detail or "unknown (no uname)", module_path),
                }
            if word in ("unusable", "nohash") or round_ == 1:
                display.vvv("retry_manager: no cached copy (%s %s)" % (word, detail), host=self._host())
                return None
            if word == "replaced":
                display.warning(
                    "retry_manager: the cached copy on this host had sha256 %s, not %s: it was "
                    "removed, not run, and is replaced" % (detail, digest)
                )
            display.vvv("retry_manager: sending %s (sha256 %s)" % (module_path, digest), host=self._host())
            with open(module_path, "rb") as fh:
                binary = fh.read()
            res = self._exec(self._script(_INSTALL, digest, platform), binary)
            mark = self._mark(res)
            if mark is None or mark[0] != "installed":
                if mark is not None and mark[0] == "corrupt":
                    raise AnsibleError(
                        "retry_manager: the copy sent to the host has sha256 %s, not %s"
                        % (mark[1], digest)
                    )
                display.vvv(
                    "retry_manager: install failed (%s): %s" % (mark, res.get("stderr", "")),
                    host=self._host(),
                )
                return None
        return None

    def _module_result(self, res):
        try:
            data = self._parse_returned_data(res, "legacy")
        except TypeError:  # ansible-core < 2.19
            data = self._parse_returned_data(res)
        from ansible.vars.clean import remove_internal_keys

        remove_internal_keys(data)
        for stream in ("stdout", "stderr"):
            if stream in data and stream + "_lines" not in data:
                data[stream + "_lines"] = (data.get(stream) or "").splitlines()
        return data
