# -*- coding: utf-8 -*-
"""Running cocoon on the managed host and reading its JSON records.

Everything cocoon decides (VM lookup, socket templates, prechecks, what a
lost reply means) stays in the command: this file only builds a JSON Lines
plan, runs `cocoon -o json batch -` once, and files each record under the
VM and op it belongs to.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import fnmatch
import glob
import json

COMMON_ARGS = dict(
    cocoon=dict(type='str', default='cocoon'),
    root_dir=dict(type='path'),
    timeout=dict(type='int'),
    parallel=dict(type='int'),
)

# cocoon_fs and cocoon_device.
STATE_ARGS = dict(
    state=dict(type='str', choices=['present', 'absent'], default='present'),
    wait=dict(type='int', default=0),
)

# Ops that change a VM; the list ops only read.
CHANGING_OPS = ('fs-attach', 'fs-detach', 'device-attach', 'device-detach')

GLOB_CHARS = '*?['


class Cocoon(object):
    """The cocoon command on this host, with the module's common options."""

    def __init__(self, module):
        self.module = module
        p = module.params
        name = p['cocoon']
        path = name if '/' in name else module.get_bin_path(name, required=True)
        self.base = [path]
        if p['root_dir']:
            self.base += ['--root-dir', p['root_dir']]
        if p['timeout'] is not None:
            self.base += ['--timeout', str(p['timeout'])]
        self.base += ['-o', 'json']
        self.commands = []

    def _run(self, args, data=None):
        cmd = self.base + args
        self.commands.append(' '.join(cmd))
        return self.module.run_command(cmd, data=data)

    def _fail(self, what, rc, out, err):
        self.module.fail_json(msg='%s: cocoon exited %d: %s' % (what, rc, (err or out).strip()),
                              rc=rc, stdout=out, stderr=err, commands=self.commands)

    def vm_list(self):
        """cocoon's VM records on this host (a list of dicts)."""
        rc, out, err = self._run(['vm', 'list'])
        if rc != 0:
            self._fail('vm list', rc, out, err)
        try:
            return json.loads(out)
        except ValueError as e:
            self._fail('vm list: unreadable JSON (%s)' % e, rc, out, err)

    def batch(self, plan=None, src=None):
        """Runs a plan (a list of op dicts, or JSON Lines text) or the plan
        file src on the host.  Returns (records, summary, rc); exits the
        module when cocoon did not run the plan at all."""
        args = ['batch']
        if self.module.params['parallel'] is not None:
            args += ['--parallel', str(self.module.params['parallel'])]
        if src is not None:
            rc, out, err = self._run(args + [src])
        else:
            if not isinstance(plan, str):
                plan = ''.join(json.dumps(op, sort_keys=True) + '\n' for op in plan)
            rc, out, err = self._run(args + ['-'], data=plan)
        records, summary = [], None
        for line in out.splitlines():
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                self._fail('batch: a line of output is not JSON (%r)' % line[:200], rc, out, err)
            if 'summary' in rec:
                summary = rec['summary']
            else:
                records.append(rec)
        # 0: all ok, 1: some failed; anything else, or no summary, means the
        # plan did not run (usage error, cannot read the plan).
        if rc not in (0, 1) or summary is None:
            self._fail('batch', rc, out, err)
        return records, summary, rc


def resolve_vms(cocoon, specs):
    """VM arguments for cocoon, in order, without repeats.  A spec with
    glob characters is a pattern: when it starts with / over the host's
    files (API sockets), otherwise over the names and ids of cocoon's
    `vm list`.  Anything else is passed as given."""
    out, seen, listing = [], set(), None
    for spec in specs:
        if not any(c in spec for c in GLOB_CHARS):
            found = [spec]
        elif spec.startswith('/'):
            found = sorted(glob.glob(spec))
        else:
            if listing is None:
                listing = cocoon.vm_list()
            found = []
            for rec in listing:
                name = (rec.get('config') or {}).get('name')
                if (name and fnmatch.fnmatchcase(name, spec)) or \
                        fnmatch.fnmatchcase(rec.get('id', ''), spec):
                    found.append(name or rec['id'])
        for vm in found:
            if vm not in seen:
                seen.add(vm)
                out.append(vm)
    return out


def by_vm_op(records):
    """{(vm, op): record}; a plan here has at most one op of a kind per VM."""
    return dict(((r.get('vm'), r.get('op')), r) for r in records)


def vm_result(rec, changed=False, msg=None):
    """The per-VM result from cocoon's record of the deciding op; msg, when
    given, replaces cocoon's error."""
    res = dict(changed=changed, failed=False)
    if rec is None:
        res.update(failed=True, msg=msg or 'cocoon printed no record for this VM')
        return res
    for k in ('id', 'tag', 'pci', 'note', 'latency_ms'):
        if k in rec:
            res[k] = rec[k]
    if msg is not None:
        res['msg'] = msg
    if not rec.get('ok') and msg is None:
        err = rec.get('error', 'failed')
        res.update(failed=True, msg=err)
        if 'outcome unknown' in err:
            res['outcome_unknown'] = True
    return res


def verdict(module, lst, rec, in_place, conflict=None):
    """One VM's result from its list record lst and change record rec (None
    in check mode).  in_place: the list shows the wanted state.  conflict:
    in check mode, why the change would fail (the wanted tag or id is taken
    by something else), else None."""
    if rec is not None and rec.get('ok'):
        return vm_result(rec, changed=True)
    if not module.check_mode and not in_place:
        return vm_result(rec)
    if lst is None or not lst.get('ok') or conflict:
        res = vm_result(lst, msg=conflict)
        res['failed'] = True
        return res
    # In place, or (check mode) a change that would be made: the list's
    # latency is not the change's.
    res = vm_result(lst, changed=not in_place)
    res.pop('latency_ms', None)
    return res


def failure_msg(what, failed, total, unknown, first):
    """'WHAT failed on N of M ...; FIRST'."""
    msg = '%s failed on %d of %s' % (what, failed, total)
    if unknown:
        msg += ' (%d with outcome unknown: the change may or may not have been ' \
               'applied; inspect those VMs before retrying)' % unknown
    return msg + '; ' + first


def finish(module, cocoon, results, diff_before, diff_after, what, **extra):
    """exit_json or fail_json with every VM's result."""
    changed = [vm for vm, r in results.items() if r['changed']]
    failed = [vm for vm, r in results.items() if r['failed']]
    unknown = [vm for vm in failed if results[vm].get('outcome_unknown')]
    out = dict(changed=bool(changed), vms=results, changed_vms=changed, failed_vms=failed,
               commands=cocoon.commands, **extra)
    if module._diff and changed:
        out['diff'] = dict(before_header=what, after_header=what,
                           before=''.join('%s\n' % l for l in diff_before),
                           after=''.join('%s\n' % l for l in diff_after))
    if failed:
        first = failed[0]
        module.fail_json(msg=failure_msg(what, len(failed), '%d VMs' % len(results),
                                         len(unknown), '%s: %s' % (first, results[first]['msg'])),
                         **out)
    n = len(changed)
    out['msg'] = '%s: %d of %d VMs %s' % (
        what, n, len(results), 'would change' if module.check_mode else 'changed')
    module.exit_json(**out)
