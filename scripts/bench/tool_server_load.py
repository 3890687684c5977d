#!/usr/bin/env python3
"""Load and durability check of the demo tool server (`umi tools serve`), issue 15:

  tool_server_load.py PATH/TO/umi

50 clients x 200 POST add_todo writes each (keep-alive connections) while 5 more clients hold a
POST whose announced body never arrives; then the state must hold 10,000 items with unique ids
and titles. The server is then killed with SIGKILL and restarted on the same state, which must
still hold all 10,000 acknowledged writes. Prints throughput, latency percentiles and the counts;
exits non-zero when an item is missing or a request failed. Standard library only.
"""
import http.client, json, sys, time, subprocess, os, socket, threading
binary=sys.argv[1]; clients=50; per=200; stalled_n=5
s=socket.socket(); s.bind(("127.0.0.1",0)); port=s.getsockname()[1]; s.close()
state=f"/tmp/conc-state-{port}.json"
p=subprocess.Popen([binary,"tools","serve","--port",str(port),"--state",state],stderr=subprocess.DEVNULL)
time.sleep(1.0)
stalled=[]
for _ in range(stalled_n):
    k=socket.create_connection(("127.0.0.1",port))
    k.sendall(b"POST /tools/add_todo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{\"title\"")
    stalled.append(k)
errors=[]; lat=[]
def work(c):
    conn=http.client.HTTPConnection("127.0.0.1",port,timeout=10)
    for i in range(per):
        t=time.time()
        try:
            conn.request("POST","/tools/add_todo",body=json.dumps({"title":f"c{c}-{i}"}),headers={"Content-Type":"application/json"})
            r=conn.getresponse(); r.read()
            if r.status!=200: errors.append(r.status)
        except Exception as e:
            errors.append(str(e)); conn=http.client.HTTPConnection("127.0.0.1",port,timeout=10)
        lat.append(time.time()-t)
t0=time.time()
th=[threading.Thread(target=work,args=(c,)) for c in range(clients)]
[x.start() for x in th]; [x.join() for x in th]
el=time.time()-t0
conn=http.client.HTTPConnection("127.0.0.1",port)
conn.request("GET","/tools/list_todos?include_done=true"); todos=json.loads(conn.getresponse().read())["response"]["todos"]
ids=[t["id"] for t in todos]; titles=set(t["title"] for t in todos)
p.kill(); p.wait()
for k in stalled: k.close()
# restart after kill -9 (on a new port): nothing acknowledged lost
s=socket.socket(); s.bind(("127.0.0.1",0)); port=s.getsockname()[1]; s.close()
p=subprocess.Popen([binary,"tools","serve","--port",str(port),"--state",state]); time.sleep(2.0)
conn=http.client.HTTPConnection("127.0.0.1",port)
conn.request("GET","/tools/list_todos?include_done=true"); after=json.loads(conn.getresponse().read())["response"]["todos"]
p.kill()
lat.sort()
print(f"{clients} clients x {per} writes beside {stalled_n} stalled: {el:.1f} s, {clients*per/el:.0f} writes/s, errors {len(errors)}, p50 {lat[len(lat)//2]*1000:.1f} ms, p99 {lat[int(len(lat)*.99)]*1000:.1f} ms")
print(f"state: {len(ids)} items, {len(set(ids))} unique ids, {len(titles)} unique titles; after kill -9 and restart: {len(after)} items")
for f in (state, state+".journal"):
    try: os.remove(f)
    except FileNotFoundError: pass

sys.exit(0 if not errors and len(set(ids)) == clients * per == len(after) else 1)
