#!/usr/bin/python3
"""tests/chsim/schema_check.py: holds chsim to Cloud Hypervisor's own API
definition.  Drives chsim through every endpoint cocoon uses, in all three
API generations, and checks each response:

  * a success status is one the OpenAPI document lists for that path and
    method, and its body validates against the document's schema;
  * an error body is CH's error chain: a JSON array of strings (v47 and
    later; plain text before), and at the head generation every text is one
    of CH's own (rust-facts.json) and the status is the one CH's
    api_error_status_code gives that chain.

Where the document and CH's Rust disagree, the Rust wins; each such case is
listed in RUST_OVER_YAML with the reason.

usage: schema_check.py CHSIM OPENAPI_YAML RUST_FACTS_JSON (tests/test_chsim_schema.sh
finds the files)
Needs Debian's python3-yaml and python3-jsonschema (hence /usr/bin/python3).
"""

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

import jsonschema
import yaml

# (method, path) -> statuses CH's Rust sends that the document omits.
RUST_OVER_YAML = {
    # VmmShutdown::handle_request answers StatusCode::OK with no body.
    ("PUT", "/vmm.shutdown"): {200},
}

# Texts of an error chain that come from crates outside vmm/ and so are not
# in rust-facts.json: the serde_json reason after "Failed to deserialize
# JSON", vm-migration's MigratableError, the anyhow text CH attaches to it,
# the pci crate, vfio-ioctls and virtio-devices' vhost-user errors.
OTHER_CRATES = [
    r"Failed to (pause|resume|snapshot) migratable component",
    r"Failed to (send|receive) migratable component snapshot",
    r"Destination is not a directory: \".*\"",
    r"Could not extract path from URL: .*",
    r"Error (creating|opening) VM (config|state) snapshot file( \".*\")?",
    r"Error deserialising VM config snapshot",
    r"\w[\w ]* \(os error \d+\)",
    r"Invalid transition: InvalidStateTransition\(\w+, \w+\)",
    r"Trying to snapshot while VM is running",
    r"Could not find an available device slot on the PCI bus",
    r"invalid file path",
    r"Failed to connect to vhost-user backend",
    r"Timed out waiting for vhost-user connection",
]

failures = []


def fail(what):
    failures.append(what)
    print("FAIL: " + what, file=sys.stderr)


def fact_patterns(facts):
    pats = []
    for enum in facts["enums"].values():
        for t in enum["texts"]:
            parts = re.split(r"\{[^}]*\}", t["text"])
            pats.append(re.compile("^" + ".+".join(re.escape(p) for p in parts) + "$"))
    return pats + [re.compile("^" + p + "$") for p in OTHER_CRATES]


def expected_status(chain):
    """CH's HttpError::status_code and api_error_status_code, by text."""
    head = chain[0]
    if head in ("Failed to deserialize JSON", "Bad Request"):
        return 400
    if head == "Not Found":
        return 404
    if head != "Error from API":
        return 500
    rest = chain[1:]
    if len(rest) >= 2:
        source = rest[1]
        if source in ("VM is not created", "VM config is missing") or \
                source.startswith("No device with id "):
            return 404
        if source == "Error from device manager" and len(rest) >= 3 and \
                rest[2].startswith("Failed to find device corresponding to the given identifier"):
            return 404
        if source == "Failed to validate config" and len(rest) >= 3:
            if re.match(r"^Identifier .* is not unique$", rest[2]) or \
                    rest[2].startswith("Duplicated device path: "):
                return 409
            return 400
    return 500


class Chsim:
    def __init__(self, binary, tmp, gen, args):
        self.sock = os.path.join(tmp, "api-%s-%d.sock" % (gen, time.monotonic_ns()))
        self.gen = gen
        self.binary = binary
        self.proc = subprocess.Popen([binary, "--api-socket", "path=" + self.sock,
                                      "--api-version", gen] + args)
        # The socket file exists from bind(); wait until it accepts.
        deadline = time.monotonic() + 10
        while True:
            try:
                probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                probe.connect(self.sock)
                probe.close()
                break
            except OSError:
                probe.close()
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("chsim did not come up: %s" % args)
            time.sleep(0.02)

    def req(self, method, path, body=None):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(30)
        s.connect(self.sock)
        data = body.encode() if body is not None else b""
        head = "%s %s HTTP/1.1\r\nHost: localhost\r\n" % (method, path)
        if method != "GET" or data:
            head += "Content-Length: %d\r\n" % len(data)
        s.sendall(head.encode() + b"\r\n" + data)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        hdr, _, rest = buf.partition(b"\r\n\r\n")
        lines = hdr.decode().split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            chunk = s.recv(65536)
            if not chunk:
                break
            rest += chunk
        s.close()
        return status, headers, rest[:length].decode()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(timeout=10)


class Checker:
    def __init__(self, doc, facts):
        self.doc = doc
        self.pats = fact_patterns(facts)
        self.count = 0

    def schema_for(self, path, method, status):
        op = self.doc["paths"].get(path, {}).get(method.lower())
        if op is None:
            return False, None
        resp = op.get("responses", {}).get(status, op.get("responses", {}).get(str(status)))
        if resp is None:
            return status in RUST_OVER_YAML.get((method, path), ()), None
        schema = resp.get("content", {}).get("application/json", {}).get("schema")
        return True, schema

    def check(self, sim, method, path, body=None, want=None):
        status, headers, text = sim.req(method, "/api/v1" + path, body)
        self.count += 1
        what = "%s %s %s %s -> %d %s" % (sim.gen, method, path, body or "", status, text[:300])
        if want is not None and status != want:
            fail("%s: want status %d" % (what, want))
        if 200 <= status < 300:
            listed, schema = self.schema_for(path, method, status)
            if not listed:
                fail("%s: status not in the API document" % what)
            if schema is None:
                if text:
                    fail("%s: body where the document has none" % what)
                return status, None
            try:
                value = json.loads(text)
            except ValueError as e:
                fail("%s: not JSON: %s" % (what, e))
                return status, None
            full = dict(schema)
            full["components"] = self.doc["components"]
            for err in jsonschema.Draft4Validator(full).iter_errors(value):
                fail("%s: schema: %s at %s" % (what, err.message,
                                                "/".join(str(p) for p in err.absolute_path)))
            return status, value
        self.check_error(what, sim.gen, status, headers, text)
        return status, text

    def check_error(self, what, gen, status, headers, text):
        if headers.get("server") != "Cloud Hypervisor API":
            fail("%s: error not from CH's API layer" % what)
        if gen == "v46":
            if text.startswith("["):
                fail("%s: v46 errors are plain text" % what)
            return
        try:
            chain = json.loads(text)
        except ValueError:
            fail("%s: error body is not JSON" % what)
            return
        if not isinstance(chain, list) or not chain or \
                not all(isinstance(t, str) for t in chain):
            fail("%s: error body is not an array of strings" % what)
            return
        if gen != "head":
            return
        # serde_json's own reason follows "Failed to deserialize JSON".
        texts = chain[:1] if chain[0] == "Failed to deserialize JSON" else chain
        for t in texts:
            if not any(p.match(t) for p in self.pats):
                fail("%s: %r is none of CH's error texts" % (what, t))
        if expected_status(chain) != status:
            fail("%s: CH answers this chain with %d" % (what, expected_status(chain)))


def booted_scenario(c, sim, tmp):
    """A VMM started with a payload: hot add, remove, eject, state changes."""
    vfio = tempfile.mkdtemp(dir=tmp)
    vfio2 = tempfile.mkdtemp(dir=tmp)
    c.check(sim, "GET", "/vmm.ping", want=200)
    c.check(sim, "GET", "/vm.info", want=200)
    c.check(sim, "PUT", "/vm.add-fs", '{"tag":"data","socket":"/s1","id":"data"}', 200)
    c.check(sim, "PUT", "/vm.add-fs", '{"tag":"logs","socket":"/s2","num_queues":2}', 200)
    c.check(sim, "PUT", "/vm.add-device", json.dumps({"path": vfio, "id": "gpu0"}), 200)
    c.check(sim, "PUT", "/vm.add-device", json.dumps({"path": vfio2}), 200)
    status, info = c.check(sim, "GET", "/vm.info", want=200)
    if info and len(json.dumps(info, separators=(",", ":"))) < 4096:
        fail("%s vm.info of a VM with four devices is under 4 KiB" % sim.gen)
    for body in ['{"tag":"x","socket":"/x","id":"data"}', '{"tag":"x","socket":"/x","id":"__x"}',
                 '{"tag":"x","socket":"/x","num_queues":3}',
                 '{"tag":"x","socket":"/x","queue_size":1000}',
                 '{"tag":"x","socket":"/x","iommu":true}',
                 '{"tag":"x","socket":"/x","pci_segment":1}',
                 '{"tag":"x","socket":"/x","id":"_disk0"}',
                 '{"tag":"x","socket":"/x","id":"__rng"}',
                 '{nope', '{"tag":"x"}', '[1]']:
        c.check(sim, "PUT", "/vm.add-fs", body)
    for body in [json.dumps({"path": vfio}), '{"path":"/nonexistent/dev"}', '{}',
                 json.dumps({"path": tmp, "id": "gpu0"})]:
        c.check(sim, "PUT", "/vm.add-device", body)
    c.check(sim, "PUT", "/vm.add-fs", want=400)
    c.check(sim, "PUT", "/vm.remove-device", '{"id":"nope"}', 404 if sim.gen == "head" else 500)
    c.check(sim, "PUT", "/vm.remove-device", '{"id":"__rng"}', 500)
    c.check(sim, "PUT", "/vm.remove-device", '{"id":"data"}', 204)
    c.check(sim, "GET", "/vm.info", want=200)
    # The eject is pending: the node is still in the tree.
    c.check(sim, "PUT", "/vm.remove-device", '{"id":"data"}', 204)
    c.check(sim, "PUT", "/vm.add-fs", '{"tag":"data","socket":"/s1","id":"data"}', 500)
    sim_eject(sim)
    c.check(sim, "PUT", "/vm.add-fs", '{"tag":"data","socket":"/s1","id":"data"}', 200)
    c.check(sim, "PUT", "/vm.resume", want=500)
    snap = tempfile.mkdtemp(dir=tmp)
    dest = json.dumps({"destination_url": "file://" + snap})
    c.check(sim, "PUT", "/vm.snapshot", dest, 500)
    c.check(sim, "PUT", "/vm.pause", want=204)
    c.check(sim, "PUT", "/vm.pause", want=500)
    c.check(sim, "GET", "/vm.info", want=200)
    c.check(sim, "PUT", "/vm.snapshot", json.dumps({"destination_url": "file://" + snap + "/x"}),
            500)
    c.check(sim, "PUT", "/vm.snapshot", '{"destination_url":"/no-scheme"}', 500)
    c.check(sim, "PUT", "/vm.snapshot", dest, 204)
    c.check(sim, "PUT", "/vm.snapshot", dest, 500)
    c.check(sim, "PUT", "/vm.restore", json.dumps({"source_url": "file://" + snap}), 500)
    c.check(sim, "PUT", "/vm.resume", want=204)
    c.check(sim, "PUT", "/vm.pause", "{}", 400)
    c.check(sim, "GET", "/vm.pause", want=400)
    c.check(sim, "GET", "/bogus", want=404)
    c.check(sim, "PUT", "/vm.power-button", want=204)
    c.check(sim, "PUT", "/vm.boot", want=500)
    c.check(sim, "PUT", "/vm.create", '{"payload":{"kernel":"/k"}}', 500)
    c.check(sim, "PUT", "/vm.shutdown", want=204)
    status, info = c.check(sim, "GET", "/vm.info", want=200)
    if info and (info.get("state") != "Created" or "device_tree" in info):
        fail("%s vm.info after vm.shutdown: want Created without device_tree" % sim.gen)
    for ep in ("/vm.shutdown", "/vm.pause", "/vm.resume", "/vm.power-button"):
        c.check(sim, "PUT", ep, want=500)
    c.check(sim, "PUT", "/vm.remove-device", '{"id":"nope"}', 404 if sim.gen == "head" else 500)
    c.check(sim, "PUT", "/vm.add-fs", '{"tag":"cold","socket":"/c"}', 204)
    c.check(sim, "PUT", "/vm.boot", want=204)
    c.check(sim, "GET", "/vm.info", want=200)
    c.check(sim, "PUT", "/vmm.shutdown", want=200)


def sim_eject(sim):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sim.sock)
    s.sendall(b"PUT /chsim/eject HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    s.recv(4096)
    s.close()


def restore_scenario(c, sim, tmp):
    """A VMM without a VM restores a snapshot written by another one."""
    src = Chsim(sim.binary, tmp, sim.gen, ["--kernel", "/k", "--memory", "size=1G,shared=on"])
    try:
        snap = tempfile.mkdtemp(dir=tmp)
        c.check(src, "PUT", "/vm.pause", want=204)
        c.check(src, "PUT", "/vm.snapshot", json.dumps({"destination_url": "file://" + snap}), 204)
    finally:
        src.stop()
    c.check(sim, "PUT", "/vm.restore", '{}', 400)
    c.check(sim, "PUT", "/vm.restore", json.dumps({"source_url": "file://" + tmp}), 500)
    c.check(sim, "PUT", "/vm.restore", json.dumps({"source_url": "file://" + snap}), 204)
    status, info = c.check(sim, "GET", "/vm.info", want=200)
    if info and (info.get("state") != "Paused" or
                 not info.get("config", {}).get("memory", {}).get("shared")):
        fail("%s vm.info after vm.restore: want Paused with shared memory" % sim.gen)
    c.check(sim, "PUT", "/vm.resume", want=204)


def novm_scenario(c, sim):
    """A VMM started without a payload has no VM until vm.create."""
    novm = 404 if sim.gen != "v46" else 500
    c.check(sim, "GET", "/vm.info", want=novm)
    c.check(sim, "PUT", "/vm.add-fs", '{"tag":"x","socket":"/x"}', novm)
    c.check(sim, "PUT", "/vm.add-device", '{"path":"/tmp"}', novm)
    c.check(sim, "PUT", "/vm.remove-device", '{"id":"x"}', novm)
    c.check(sim, "PUT", "/vm.boot", want=novm)
    c.check(sim, "PUT", "/vm.pause", want=500)
    c.check(sim, "PUT", "/vm.shutdown", want=500)
    c.check(sim, "PUT", "/vm.create", want=400)
    config = {"cpus": {"boot_vcpus": 2, "max_vcpus": 4},
              "memory": {"size": 1 << 30, "shared": True},
              "payload": {"kernel": "/boot/vmlinux", "cmdline": "console=hvc0"},
              "disks": [{"path": "/img/root.raw"}], "net": [{"tap": "tap7", "mac": "52:54:00:01:02:03"}],
              "fs": [{"tag": "boot", "socket": "/b", "num_queues": 1, "queue_size": 1024}],
              "devices": [{"path": "/tmp", "id": "gpu9"}]}
    c.check(sim, "PUT", "/vm.create", json.dumps(config), 204)
    c.check(sim, "PUT", "/vm.create", json.dumps(config), 500)
    status, info = c.check(sim, "GET", "/vm.info", want=200)
    if info:
        cfg = info.get("config", {})
        if info.get("state") != "Created" or not cfg.get("memory", {}).get("shared") or \
                cfg.get("payload", {}).get("kernel") != "/boot/vmlinux" or \
                cfg.get("cpus", {}).get("max_vcpus") != 4 or len(cfg.get("fs", [])) != 1:
            fail("%s vm.info does not carry the vm.create body: %s" % (sim.gen, cfg))
    c.check(sim, "PUT", "/vm.boot", want=204)
    c.check(sim, "GET", "/vm.info", want=200)


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    binary, doc_path, facts_path = sys.argv[1:]
    try:
        with open(doc_path) as f:
            doc = yaml.safe_load(f)
        with open(facts_path) as f:
            facts = json.load(f)
    except OSError as e:
        print("schema_check: %s" % e,
              file=sys.stderr)
        return 1
    c = Checker(doc, facts)
    with tempfile.TemporaryDirectory(prefix="chsim-schema-") as tmp:
        for gen in ("head", "v53", "v46"):
            sims = []
            try:
                sim = Chsim(binary, tmp, gen, ["--kernel", "/boot/vmlinux", "--cpus", "boot=2",
                                               "--memory", "size=1G,shared=on", "--no-connect",
                                               "--no-eject"])
                sims.append(sim)
                booted_scenario(c, sim, tmp)
                sim = Chsim(binary, tmp, gen, ["--no-connect"])
                sims.append(sim)
                novm_scenario(c, sim)
                sim = Chsim(binary, tmp, gen, [])
                sims.append(sim)
                restore_scenario(c, sim, tmp)
                sim = Chsim(binary, tmp, gen, ["--kernel", "/k", "--memory", "size=1G"])
                sims.append(sim)
                c.check(sim, "PUT", "/vm.add-fs", '{"tag":"x","socket":"/x"}',
                        400 if gen == "head" else 500)
            except (OSError, RuntimeError, ValueError) as e:
                fail("%s: %s" % (gen, e))
            finally:
                for s in sims:
                    s.stop()
    print("chsim schema check: %d responses, %d failures" % (c.count, len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
