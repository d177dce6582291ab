# -*- coding: utf-8 -*-
"""Options every cocoon module takes: how to run the command on the host."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):

    DOCUMENTATION = r'''
options:
  cocoon:
    description:
      - The cocoon command on the managed host, a path or a name looked up in
        C(PATH).
    type: str
    default: cocoon
  root_dir:
    description:
      - cocoon's state root on the host (C(--root-dir)); where VM names and
        ids are resolved.
      - Unset, cocoon uses C(COCOON_ROOT_DIR), else C(/var/lib/cocoon).
    type: path
  timeout:
    description:
      - Seconds cocoon waits for each VM's API (C(--timeout)); unset, cocoon's
        default.
    type: int
  parallel:
    description:
      - At most this many VMs in flight at once (C(--parallel)); unset,
        cocoon's default of 256.
    type: int
requirements:
  - the cocoon command on the managed host
  - Python 3 on the managed host
notes:
  - One task runs one C(cocoon -o json batch) process on the host for all the
    VMs it names, so a task on a host with a thousand VMs costs one process,
    not a thousand.
  - cocoon sends C(vm.add-fs), C(vm.add-device) and C(vm.remove-device) once
    and never retries them. When a reply is lost and a fresh C(vm.info)
    cannot settle what happened, the VM's result says C(outcome_unknown) and
    the task fails for it; look at the VM before running the task again.
'''

    # cocoon_fs and cocoon_device: the attach/detach switch.
    STATE = r'''
options:
  state:
    description: Whether the share or device should be attached or detached.
    type: str
    choices: [present, absent]
    default: present
  wait:
    description:
      - With C(state=absent), seconds to wait for the guest to eject the
        device before reporting the detach; C(0) does not wait.
    type: int
    default: 0
'''
