"""Helpers for tests/test_ansible.sh, run with Debian's python3.

  fleetctl.py ready SOCK...             wait until each chsim socket answers
  fleetctl.py stats KEY SOCK...         print the sum of chsim counter KEY
  fleetctl.py wall TREE HOST...        print cocoon's wall time on each HOST
  fleetctl.py expect TREE HOST ok|failed CHANGED NCHANGED NFAILED [TEXT...]
      check HOST's result of the playbook's last task, as Ansible's tree
      callback wrote it under TREE, and the play recap in TREE.log: outcome, changed (0/1), how many VMs
      changed and failed, and that each TEXT occurs in the result.
"""

import json
import re
import socket
import sys
import time


def get_stats(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(10)
        s.connect(path)
        s.sendall(b'GET /chsim/stats HTTP/1.1\r\nHost: localhost\r\n\r\n')
        buf = b''
        while b'\r\n\r\n' not in buf:
            buf += recv_some(s)
        head, _, body = buf.partition(b'\r\n\r\n')
        length = None
        for line in head.split(b'\r\n')[1:]:
            k, _, v = line.partition(b':')
            if k.strip().lower() == b'content-length':
                length = int(v)
        if not head.startswith(b'HTTP/1.1 200') or length is None:
            raise RuntimeError('%s: %r' % (path, head[:80]))
        while len(body) < length:
            body += recv_some(s)
    finally:
        s.close()
    return json.loads(body[:length])


def recv_some(s):
    chunk = s.recv(65536)
    if not chunk:
        raise RuntimeError('connection closed early')
    return chunk


def ready(paths):
    # A chsim binds and listens on its sockets one by one before serving:
    # wait on each answering, bounded generously for a loaded machine.
    deadline = time.monotonic() + 60
    for p in paths:
        while True:
            try:
                get_stats(p)
                break
            except (OSError, RuntimeError, ValueError):
                if time.monotonic() > deadline:
                    sys.exit('chsim at %s never answered' % p)
                time.sleep(0.05)


def expect(out, host, status, changed, nchanged, nfailed, texts):
    with open('%s/%s' % (out, host)) as f:
        res = json.load(f)
    # The tree callback drops "failed": the play recap has it.
    with open(out + '.log') as f:
        recap = re.search(r'^%s\s+:.*\sfailed=(\d+)' % re.escape(host), f.read(), re.M)
    fail = []
    if not recap:
        fail.append('no play recap line')
    elif (recap.group(1) != '0') != (status == 'failed'):
        fail.append('failed=%s in the recap, want %s' % (recap.group(1), status))
    if bool(res.get('changed')) != bool(int(changed)):
        fail.append('changed=%s, want %s' % (res.get('changed'), changed))
    if len(res.get('changed_vms', [])) != int(nchanged):
        fail.append('%d VMs changed, want %s' % (len(res.get('changed_vms', [])), nchanged))
    if len(res.get('failed_vms', [])) != int(nfailed):
        fail.append('%d VMs failed, want %s' % (len(res.get('failed_vms', [])), nfailed))
    dump = json.dumps(res)
    for t in texts:
        if t not in dump:
            fail.append('no %r in the result' % t)
    if fail:
        sys.exit('%s %s: %s\nresult: %s' % (out, host, '; '.join(fail), dump[:3000]))


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == 'ready':
        ready(args)
    elif cmd == 'stats':
        print(sum(get_stats(p).get(args[0], 0) for p in args[1:]))
    elif cmd == 'wall':
        walls = []
        for host in args[1:]:
            with open('%s/%s' % (args[0], host)) as f:
                walls.append('%s %.1f ms' % (host, json.load(f)['summary']['wall_ms']))
        print(', '.join(walls))
    elif cmd == 'expect':
        expect(args[0], args[1], args[2], args[3], args[4], args[5], args[6:])
    else:
        sys.exit('unknown command %s' % cmd)


if __name__ == '__main__':
    main()
