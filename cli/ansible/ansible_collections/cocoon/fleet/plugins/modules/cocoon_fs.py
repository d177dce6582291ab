#!/usr/bin/python
# -*- coding: utf-8 -*-
"""A virtio-fs share present or absent on many VMs of one host."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: cocoon_fs
short_description: Attach or detach a virtio-fs share on running Cloud Hypervisor VMs
version_added: 0.1.0
description:
  - Makes a virtio-fs share with tag C(tag) present or absent on every VM in
    C(vms) on the managed host, through one run of the host's C(cocoon)
    command for all of them.
  - Before changing anything the same run lists each VM's shares, so a share
    already attached with the same tag and socket is left alone
    (C(changed=false)); a share under the same tag but another socket fails
    that VM with cocoon's message.
  - cocoon does every check (the VM runs, it has shared memory, the
    virtiofsd socket has a listener, the tag is free) and talks to the VMM;
    this module only reads cocoon's JSON records.
  - Each VM needs its own virtiofsd (it serves one client); start it before
    this task. cocoon never starts virtiofsd.
options:
  vms:
    description:
      - The VMs on the managed host. Each item is a VM that cocoon created
        (its name, id or an id prefix of 3 or more characters), the absolute
        path of a VM's API socket, or a pattern.
      - A pattern (with C(*), C(?) or C([)) that starts with C(/) matches
        API socket paths on the host; any other pattern matches the names
        and ids of cocoon's C(vm list).
      - A pattern that matches nothing adds no VM; a task with no VM at all
        changes nothing.
    type: list
    elements: str
    required: true
    aliases: [vm]
  tag:
    description:
      - The share's tag, as the guest mounts it (C(mount -t virtiofs TAG DIR)).
        cocoon names the device C(cocoon-fs-TAG).
    type: str
    required: true
  socket:
    description:
      - The virtiofsd socket, required with C(state=present). It may be a
        template that cocoon expands per VM - C({name}) the VM's name,
        C({id}) its id, C({vm}) the item as given; for a VM named by its API
        socket C({name}) and C({id}) are the socket's file name without
        C(.sock).
    type: str
  num_queues:
    description: Request queues of the device; unset, cocoon's default.
    type: int
  queue_size:
    description: Size of each queue; unset, cocoon's default.
    type: int
  socket_check:
    description:
      - Have cocoon check that the socket has a listener before the attach.
        Turn it off only for sockets in another mount namespace.
    type: bool
    default: true
extends_documentation_fragment:
  - cocoon.fleet.cocoon
  - cocoon.fleet.cocoon.state
attributes:
  check_mode:
    support: full
    description: Lists the shares of every VM and reports what would change; nothing is attached or detached.
  diff_mode:
    support: full
    description: Shows, per VM that changes, the share before and after.
  platform:
    platforms: posix
author:
  - cocoon developers
'''

EXAMPLES = r'''
- name: Share /srv/data with every web VM on each host
  cocoon.fleet.cocoon_fs:
    vms: "web-*"
    socket: /run/vfs/{name}.sock
    tag: data

- name: VMs that cocoon did not create, by API socket
  cocoon.fleet.cocoon_fs:
    vms:
      - /run/ch/vm0.sock
      - /run/ch/vm1.sock
    socket: /run/vfs/{name}.sock
    tag: data
    num_queues: 1
    queue_size: 1024
    root_dir: /var/lib/cocoon

- name: Every VM served from one directory, detached and ejected
  cocoon.fleet.cocoon_fs:
    vms: /run/ch/*.sock
    tag: data
    state: absent
    wait: 10
'''

RETURN = r'''
vms:
  description:
    - One entry per VM, keyed by the VM as passed to cocoon, whatever the
      outcome on the other VMs.
  returned: always
  type: dict
  sample:
    /run/ch/vm0.sock:
      changed: true
      failed: false
      id: cocoon-fs-data
      tag: data
      socket: /run/vfs/vm0.sock
      latency_ms: 1.2
    /run/ch/vm1.sock:
      changed: false
      failed: true
      msg: fs tag "data" already attached
      socket: /run/vfs/vm1.sock
      before: /run/vfs/old.sock
  contains:
    changed:
      description: Whether the share was (or in check mode would be) attached or detached on this VM.
      type: bool
    failed:
      description: Whether this VM failed.
      type: bool
    msg:
      description: cocoon's message when the VM failed.
      type: str
    outcome_unknown:
      description:
        - Present and true when cocoon could not tell whether the change was
          applied (the reply was lost and the VMM could not be asked). The
          VM counts as failed.
      type: bool
    socket:
      description: The socket as cocoon expanded it for this VM (C(state=present)).
      type: str
    before:
      description: The socket of the share with this tag before the task, absent when there was none.
      type: str
    id:
      description: The device id, C(cocoon-fs-TAG).
      type: str
    note:
      description: A remark on a success, e.g. that the reply was lost and C(vm.info) showed the share attached.
      type: str
    latency_ms:
      description: Milliseconds cocoon took for the change.
      type: float
changed_vms:
  description: The VMs that changed (or would).
  returned: always
  type: list
  elements: str
failed_vms:
  description: The VMs that failed.
  returned: always
  type: list
  elements: str
summary:
  description:
    - cocoon's summary of its run on the host - operations (a list and a
      change per VM, or only the list in check mode), how many succeeded
      and failed, and the wall time and latency percentiles in milliseconds.
    - A change that was already in place counts as failed here; C(vms) has
      the verdict.
  returned: when there was a VM
  type: dict
  sample: {total: 200, ok: 200, failed: 0, wall_ms: 31.4, p50_ms: 9.8, p99_ms: 14.0}
commands:
  description: The cocoon command lines run on the host.
  returned: always
  type: list
  elements: str
  sample: ["/usr/local/bin/cocoon -o json batch -"]
msg:
  description: A one-line summary; on failure the count of failed VMs and the first one's message.
  returned: always
  type: str
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.cocoon.fleet.plugins.module_utils.cocoon import (
    COMMON_ARGS, STATE_ARGS, Cocoon, by_vm_op, finish, resolve_vms, verdict)


def main():
    args = dict(
        vms=dict(type='list', elements='str', required=True, aliases=['vm']),
        tag=dict(type='str', required=True),
        socket=dict(type='str'),
        num_queues=dict(type='int'),
        queue_size=dict(type='int'),
        socket_check=dict(type='bool', default=True),
    )
    args.update(COMMON_ARGS)
    args.update(STATE_ARGS)
    module = AnsibleModule(argument_spec=args, supports_check_mode=True,
                           required_if=[('state', 'present', ['socket'])])
    p = module.params
    present = p['state'] == 'present'
    tag = p['tag']
    cocoon = Cocoon(module)
    vms = resolve_vms(cocoon, p['vms'])

    # Per VM: list first (the before state and, for present, the socket as
    # cocoon expands it), then the change, on the same connection in order.
    # An attach of a tag already there fails in cocoon's precheck without
    # reaching the VMM; the list says whether that is the wanted state.
    plan = []
    for vm in vms:
        lst = dict(op='fs-list', vm=vm)
        if present:
            lst['socket'] = p['socket']
        plan.append(lst)
        if module.check_mode:
            continue
        if present:
            op = dict(op='fs-attach', vm=vm, socket=p['socket'], tag=tag)
            for k in ('num_queues', 'queue_size'):
                if p[k] is not None:
                    op[k] = p[k]
            if not p['socket_check']:
                op['no_socket_check'] = True
        else:
            op = dict(op='fs-detach', vm=vm, tag=tag)
            if p['wait']:
                op['wait'] = p['wait']
        plan.append(op)

    records, summary = cocoon.batch(plan)[:2] if plan else ([], None)
    recs = by_vm_op(records)
    results, before_lines, after_lines = {}, [], []
    change_op = 'fs-attach' if present else 'fs-detach'
    for vm in vms:
        lst = recs.get((vm, 'fs-list'))
        listed = lst is not None and lst.get('ok')
        before = None
        if listed:
            for share in lst.get('fs', []):
                if share.get('tag') == tag:
                    before = share.get('socket')
        want = lst.get('socket') if (present and lst) else None
        in_place = listed and ((before is not None and before == want) if present
                               else before is None)

        conflict = None
        if module.check_mode and present and listed and before is not None and not in_place:
            conflict = 'fs tag "%s" already attached with socket %s, not %s' % (tag, before, want)
        res = verdict(module, lst, recs.get((vm, change_op)), in_place, conflict)
        if present and want is not None:
            res['socket'] = want
        if before is not None:
            res['before'] = before
        if res['changed']:
            before_lines.append('%s: %s' % (vm, before if before is not None else '(none)'))
            after_lines.append('%s: %s' % (vm, want if present else '(none)'))
        results[vm] = res

    finish(module, cocoon, results, before_lines, after_lines,
           'fs %s %s' % (tag, 'attach' if present else 'detach'), summary=summary)


if __name__ == '__main__':
    main()
