#!/usr/bin/python
# -*- coding: utf-8 -*-
"""A cocoon JSON Lines plan run on the managed host."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: cocoon_batch
short_description: Run a cocoon JSON Lines plan on the managed host
version_added: 0.1.0
description:
  - Runs C(cocoon batch) once on the managed host with a plan of attach,
    detach and list operations, given from the controller (C(plan)) or as a
    file already on the host (C(src)), and returns every operation's record.
  - The plan runs as written. Operations on one VM run in plan order, VMs
    run concurrently. It is not idempotent - an attach that is already in
    place fails like any other; use M(cocoon.fleet.cocoon_fs) and
    M(cocoon.fleet.cocoon_device) for a desired state.
  - A plan line is one JSON object - C(op) one of C(fs-attach),
    C(fs-detach), C(device-attach), C(device-detach), C(fs-list),
    C(device-list); C(vm); and the fields C(socket), C(tag), C(num_queues),
    C(queue_size), C(no_socket_check), C(pci), C(id), C(wait). A bad line
    fails by itself, with its line number, and the rest still runs.
options:
  plan:
    description:
      - The plan from the controller, a list of operations (dicts) or JSON
        Lines text, e.g. from C(lookup('file', 'plan.jsonl')).
      - Exactly one of C(plan) and C(src).
    type: raw
  src:
    description:
      - The path of a JSON Lines plan file on the managed host.
    type: path
extends_documentation_fragment:
  - cocoon.fleet.cocoon
attributes:
  check_mode:
    support: none
    description: A plan cannot be answered without running it; in check mode the task is skipped.
  diff_mode:
    support: none
    description: No diff.
  platform:
    platforms: posix
author:
  - cocoon developers
'''

EXAMPLES = r'''
- name: A plan written in the playbook
  cocoon.fleet.cocoon_batch:
    plan:
      - {op: fs-attach, vm: web-1, socket: /run/vfs/web-1.sock, tag: data}
      - {op: device-attach, vm: gpu-1, pci: "01:00.0", id: gpu0}
      - {op: fs-list, vm: web-1}

- name: A plan file kept next to the playbook
  cocoon.fleet.cocoon_batch:
    plan: "{{ lookup('file', 'attach.jsonl') }}"
    parallel: 64

- name: A plan generated on the host
  cocoon.fleet.cocoon_batch:
    src: /var/lib/cocoon/plans/nightly.jsonl
'''

RETURN = r'''
results:
  description:
    - Every operation's record as cocoon printed it, in completion order -
      C(vm), C(op), C(ok), and as they apply C(id), C(tag), C(pci),
      C(error), C(note), C(latency_ms), C(fs) or C(devices) (list ops). A
      line that did not parse has only C(ok) and C(error).
  returned: always
  type: list
  elements: dict
  sample:
    - {vm: web-1, op: fs-attach, ok: true, id: cocoon-fs-data, tag: data, latency_ms: 1.4}
    - {vm: gpu-1, op: device-attach, ok: false, id: gpu0, pci: "01:00.0", error: "device id \"gpu0\" already in use"}
summary:
  description: cocoon's summary of the run.
  returned: always
  type: dict
  sample: {total: 3, ok: 2, failed: 1, wall_ms: 4.2, p50_ms: 1.4, p99_ms: 2.9}
failed_ops:
  description: The records of the operations that failed.
  returned: always
  type: list
  elements: dict
outcome_unknown:
  description: The records of the operations whose outcome cocoon could not settle; they count as failed.
  returned: always
  type: list
  elements: dict
commands:
  description: The cocoon command lines run on the host.
  returned: always
  type: list
  elements: str
msg:
  description: A one-line summary.
  returned: always
  type: str
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.cocoon.fleet.plugins.module_utils.cocoon import (
    CHANGING_OPS, COMMON_ARGS, Cocoon, failure_msg)


def main():
    args = dict(plan=dict(type='raw'), src=dict(type='path'))
    args.update(COMMON_ARGS)
    module = AnsibleModule(argument_spec=args, supports_check_mode=False,
                           required_one_of=[('plan', 'src')],
                           mutually_exclusive=[('plan', 'src')])
    plan = module.params['plan']
    if plan is not None and not isinstance(plan, (list, str)):
        module.fail_json(msg='plan: expected a list of operations or JSON Lines text, got %s'
                         % type(plan).__name__)
    cocoon = Cocoon(module)
    records, summary, rc = cocoon.batch(plan=plan, src=module.params['src'])
    failed = [r for r in records if not r.get('ok')]
    unknown = [r for r in failed if 'outcome unknown' in r.get('error', '')]
    changed = any(r.get('ok') and r.get('op') in CHANGING_OPS for r in records)
    out = dict(changed=changed, results=records, summary=summary, failed_ops=failed,
               outcome_unknown=unknown, commands=cocoon.commands)
    if failed:
        first = failed[0]
        module.fail_json(msg=failure_msg(
            'batch', len(failed), '%d operations' % len(records), len(unknown),
            '%s%s' % ('%s: ' % first['vm'] if first.get('vm') else '', first.get('error'))), **out)
    module.exit_json(msg='batch: %d operations ok' % len(records), **out)


if __name__ == '__main__':
    main()
