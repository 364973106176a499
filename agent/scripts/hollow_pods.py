"""Creates P pods bound round-robin to hollow-0..hollow-{N-1} and reports when all are Ready.

    python3 hollow_pods.py API_URL P [N]
"""
import json, sys, time, urllib.request, concurrent.futures
api = sys.argv[1]; n = int(sys.argv[2]); nodes = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
def create(i):
    body = json.dumps({"apiVersion":"v1","kind":"Pod","metadata":{"name":f"b{i}","namespace":"default"},
        "spec":{"nodeName":f"hollow-{i % nodes}","containers":[{"name":"c","image":"img"}]}}).encode()
    req = urllib.request.Request(f"{api}/api/v1/namespaces/default/pods", data=body, headers={"content-type":"application/json"})
    urllib.request.urlopen(req).read()
t0 = time.time()
with concurrent.futures.ThreadPoolExecutor(16) as ex: list(ex.map(create, range(n)))
t1 = time.time()
print(f"created {n} in {t1-t0:.1f}s")
while True:
    d = json.load(urllib.request.urlopen(f"{api}/api/v1/namespaces/default/pods"))
    ready = sum(1 for p in d["items"] if any(c["type"]=="Ready" and c["status"]=="True" for c in p.get("status",{}).get("conditions",[])))
    if ready == n or time.time() - t0 > 120: break
    time.sleep(0.5)
print(f"ready {ready}/{n} {time.time()-t0:.1f}s after first create")
