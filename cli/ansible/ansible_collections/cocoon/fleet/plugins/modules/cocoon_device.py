#!/usr/bin/python
# -*- coding: utf-8 -*-
"""A VFIO PCI device present or absent on one VM."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: cocoon_device
short_description: Attach or detach a VFIO PCI device on a running Cloud Hypervisor VM
version_added: 0.1.0
description:
  - Makes the host PCI device C(pci) present on VM C(vm) under device id
    C(id), or the device with that id absent, through one run of the host's
    C(cocoon) command.
  - The same run lists the VM's devices first. A device already attached
    under C(id) from the same host address is left alone (C(changed=false));
    another device under that id fails with cocoon's message.
  - cocoon checks the VM and the device path and talks to the VMM. It does
    not bind the device to vfio-pci; that, and the IOMMU, are the host's
    setup.
options:
  vm:
    description:
      - The VM on the managed host, a VM that cocoon created (name, id or
        id prefix) or the absolute path of a VM's API socket.
    type: str
    required: true
  pci:
    description:
      - The host device, required with C(state=present) - a short BDF
        (C(01:00.0)), a full one (C(0000:01:00.0)) or its
        C(/sys/bus/pci/devices/) path. The device must be bound to vfio-pci.
    type: str
  id:
    description:
      - The device id in the VM. Required, so that a second run finds the
        device it attached.
    type: str
    required: true
extends_documentation_fragment:
  - cocoon.fleet.cocoon
  - cocoon.fleet.cocoon.state
attributes:
  check_mode:
    support: full
    description: Lists the VM's devices and reports what would change; nothing is attached or detached.
  diff_mode:
    support: full
    description: Shows the device under C(id) before and after.
  platform:
    platforms: posix
author:
  - cocoon developers
'''

EXAMPLES = r'''
- name: Pass the GPU through to gpu-1
  cocoon.fleet.cocoon_device:
    vm: gpu-1
    pci: "01:00.0"
    id: gpu0

- name: Take it away again, once the guest has ejected it
  cocoon.fleet.cocoon_device:
    vm: gpu-1
    id: gpu0
    state: absent
    wait: 10
'''

RETURN = r'''
vms:
  description: The one VM's result, keyed by the VM as given.
  returned: always
  type: dict
  sample:
    gpu-1:
      changed: true
      failed: false
      id: gpu0
      pci: "01:00.0"
      latency_ms: 3.1
  contains:
    changed:
      description: Whether the device was (or in check mode would be) attached or detached.
      type: bool
    failed:
      description: Whether the VM failed.
      type: bool
    msg:
      description: cocoon's message when the VM failed.
      type: str
    outcome_unknown:
      description:
        - Present and true when cocoon could not tell whether the change was
          applied. The task fails.
      type: bool
    before:
      description: The host BDF of the device under C(id) before the task, absent when there was none.
      type: str
    id:
      description: The device id.
      type: str
    note:
      description: A remark on a success, e.g. that the reply was lost and C(vm.info) showed the device attached.
      type: str
    latency_ms:
      description: Milliseconds cocoon took for the change.
      type: float
changed_vms:
  description: The VM when it changed (or would).
  returned: always
  type: list
  elements: str
failed_vms:
  description: The VM when it failed.
  returned: always
  type: list
  elements: str
summary:
  description: cocoon's summary of its run on the host (a list, then the change unless in check mode).
  returned: always
  type: dict
  sample: {total: 2, ok: 2, failed: 0, wall_ms: 3.4, p50_ms: 1.2, p99_ms: 2.1}
commands:
  description: The cocoon command lines run on the host.
  returned: always
  type: list
  elements: str
msg:
  description: A one-line summary, or cocoon's message on failure.
  returned: always
  type: str
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.cocoon.fleet.plugins.module_utils.cocoon import (
    COMMON_ARGS, STATE_ARGS, Cocoon, by_vm_op, finish, verdict)

SYS_PREFIX = '/sys/bus/pci/devices/'


def same_device(listed_bdf, pci):
    """Whether a listed host BDF (dddd:bb:dd.f) is the device asked for.
    Only for telling an already attached device from another one; cocoon
    validates pci itself when it attaches."""
    want = pci.strip().lower().rstrip('/')
    if want.startswith(SYS_PREFIX):
        want = want[len(SYS_PREFIX):]
    if want.count(':') == 1:
        want = '0000:' + want
    return listed_bdf is not None and listed_bdf.lower() == want


def main():
    args = dict(
        vm=dict(type='str', required=True),
        pci=dict(type='str'),
        id=dict(type='str', required=True),
    )
    args.update(COMMON_ARGS)
    args.update(STATE_ARGS)
    module = AnsibleModule(argument_spec=args, supports_check_mode=True,
                           required_if=[('state', 'present', ['pci'])])
    p = module.params
    present = p['state'] == 'present'
    vm, dev_id = p['vm'], p['id']
    cocoon = Cocoon(module)

    plan = [dict(op='device-list', vm=vm)]
    change_op = 'device-attach' if present else 'device-detach'
    if not module.check_mode:
        if present:
            plan.append(dict(op=change_op, vm=vm, pci=p['pci'], id=dev_id))
        else:
            op = dict(op=change_op, vm=vm, id=dev_id)
            if p['wait']:
                op['wait'] = p['wait']
            plan.append(op)
    records, summary = cocoon.batch(plan)[:2]
    recs = by_vm_op(records)

    lst = recs.get((vm, 'device-list'))
    listed = lst is not None and lst.get('ok')
    attached, before = False, None
    if listed:
        for d in lst.get('devices', []):
            if d.get('id') == dev_id:
                attached, before = True, d.get('bdf')
    if present:
        in_place = listed and attached and same_device(before, p['pci'])
    else:
        in_place = listed and not attached

    conflict = None
    if module.check_mode and present and attached and not in_place:
        conflict = 'device id "%s" already in use by %s, not %s' % (
            dev_id, before or 'a device outside /sys/bus/pci/devices', p['pci'])
    res = verdict(module, lst, recs.get((vm, change_op)), in_place, conflict)
    res['id'] = dev_id
    if attached:
        res['before'] = before
    finish(module, cocoon, {vm: res},
           ['%s: %s' % (vm, before or 'attached') if attached else '%s: (none)' % vm],
           ['%s: %s' % (vm, p['pci']) if present else '%s: (none)' % vm],
           'device %s %s' % (dev_id, 'attach' if present else 'detach'), summary=summary)


if __name__ == '__main__':
    main()
