// A real Node client of the HTTP port: connect-node speaking Connect JSON over HTTP/2 (prior
// knowledge), as a Node service calling Altalune would. Driven by tests/e2e/test_node_client.py.
//
//   ALTALUNE_TOKEN=<bearer credential> node h2_client.mjs <base URL, e.g. http://127.0.0.1:8080/api> <descriptor set>
//
// The descriptor set is a serialized google.protobuf.FileDescriptorSet of the contract (written by
// the Python test from the generated modules), so no generated JavaScript is kept in the repository.
// Every call goes through ONE transport and so ONE HTTP/2 session; every call sends an
// x-request-id of its own (`node-h2-<label>`) so the server's access log can be matched to it.
// Prints one JSON summary on stdout; exits 1 on anything unexpected (the summary is then missing).

import { readFileSync } from "node:fs";

import { createFileRegistry, fromBinary, fromJson, toJson } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node";

const CONCURRENT_CALLS = 20;
const CALL_TIMEOUT_MS = 10_000;
const CANCELLED_CALLS = 300; // past the 256 client resets after which zttp alone ends a session

/**
 * connect-node's Http2SessionManager (the one createConnectTransport makes when given none),
 * watched: which HTTP/2 sessions carried the streams, their ids, and how many were open at once.
 * It only observes; connecting and requesting stay connect-node's.
 */
class WatchedSessionManager extends Http2SessionManager {
  sessions = new Set();
  streamIds = [];
  open = 0;
  counted = 0; // streams opened since countFrom() still open
  peakCounted = 0;
  #generation = 0;
  #closed = [];

  /** Start counting streams afresh: those still closing from earlier calls are left out. */
  countFrom() {
    this.#generation += 1;
    this.counted = 0;
    this.peakCounted = 0;
  }

  /** Resolves once every stream has closed (their ids are then all recorded). */
  settled() {
    return this.open === 0 ? Promise.resolve() : new Promise((resolve) => this.#closed.push(resolve));
  }

  async request(method, path, headers, options) {
    const stream = await super.request(method, path, headers, options);
    const generation = this.#generation;
    this.sessions.add(stream.session);
    this.open += 1;
    this.counted += 1;
    this.peakCounted = Math.max(this.peakCounted, this.counted);
    stream.once("close", () => {
      this.streamIds.push(stream.id);
      this.open -= 1;
      if (generation === this.#generation) this.counted -= 1;
      if (this.open === 0) this.#closed.splice(0).forEach((resolve) => resolve());
    });
    return stream;
  }
}

/**
 * A client that cancels many calls on one session, as deadlines and aborted requests do: each is a
 * health Watch, cancelled once its first answer shows the server took it (the client then resets
 * the stream). Meanwhile one more Watch stays open throughout; it must not be failed by the server
 * ending the session. Returns what happened.
 */
async function cancelMany(health, sessionManager) {
  const sessionsBefore = new Set(sessionManager.sessions);
  const staying = new AbortController();
  const stayingStatuses = [];
  let stayingError = null;
  const stayingWatch = (async () => {
    for await (const answer of health.watch({ service: "" }, { signal: staying.signal })) {
      stayingStatuses.push(answer.status);
    }
  })().catch((err) => {
    if (!staying.signal.aborted) stayingError = `${err}`;
  });
  const unexpected = [];
  for (let i = 0; i < CANCELLED_CALLS; i += 1) {
    const cancel = new AbortController();
    const answers = health.watch({ service: "" }, { signal: cancel.signal })[Symbol.asyncIterator]();
    try {
      await answers.next();
      cancel.abort();
      await answers.next();
      unexpected.push(`call ${i}: went on after it was cancelled`);
    } catch (err) {
      if (!(err instanceof ConnectError) || err.code !== Code.Canceled) unexpected.push(`call ${i}: ${err}`);
    }
  }
  const stayedOpen = stayingError === null && stayingStatuses.length > 0;
  staying.abort();
  await stayingWatch;
  return {
    cancelled: CANCELLED_CALLS,
    unexpected,
    newSessions: [...sessionManager.sessions].filter((s) => !sessionsBefore.has(s)).length,
    stayedOpen,
    stayingError,
  };
}

/** Connect's code spelling (`not_found`), as the server and the Python suite write it. */
function codeName(code) {
  return Code[code].replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase();
}

async function main() {
  const [baseUrl, descriptorSetPath] = process.argv.slice(2);
  const token = process.env.ALTALUNE_TOKEN;
  if (!baseUrl || !descriptorSetPath || !token) {
    throw new Error("usage: ALTALUNE_TOKEN=... node h2_client.mjs <base URL> <descriptor set file>");
  }
  const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(descriptorSetPath)));
  const service = (name) => {
    const found = registry.getService(name);
    if (!found) throw new Error(`${name} is not in the descriptor set`);
    return found;
  };
  const ProjectService = service("altalune.v1.ProjectService");
  const EmployeeService = service("altalune.v1.EmployeeService");
  const ErrorInfo = registry.getMessage("google.rpc.ErrorInfo");
  const BadRequest = registry.getMessage("google.rpc.BadRequest");

  const sessionManager = new WatchedSessionManager(baseUrl);
  // The content types on the wire, to show the calls really were Connect JSON both ways.
  const contentTypes = { request: new Set(), response: new Set() };
  const recordContentTypes = (next) => async (req) => {
    contentTypes.request.add(req.header.get("content-type"));
    const res = await next(req);
    contentTypes.response.add(res.header.get("content-type"));
    return res;
  };
  const transport = createConnectTransport({
    httpVersion: "2",
    baseUrl,
    useBinaryFormat: false,
    sessionManager,
    defaultTimeoutMs: CALL_TIMEOUT_MS,
    interceptors: [recordContentTypes],
  });
  const clients = new Map([ProjectService, EmployeeService].map((desc) => [desc, createClient(desc, transport)]));

  const calls = [];
  /** One RPC: the request built from proto JSON; the answer as proto JSON, or the error's shape. */
  async function call(label, desc, rpcName, requestJson) {
    const method = desc.methods.find((m) => m.name === rpcName);
    const request = fromJson(method.input, requestJson);
    const requestId = `node-h2-${label}`;
    const record = { label, rpc: `${method.parent.typeName}/${method.name}`, requestId };
    calls.push(record);
    let answeredId = null;
    try {
      const response = await clients.get(desc)[method.localName](request, {
        headers: { authorization: `Bearer ${token}`, "x-request-id": requestId },
        onHeader: (headers) => {
          answeredId = headers.get("x-request-id");
        },
      });
      Object.assign(record, { code: "ok", answeredRequestId: answeredId });
      return { ok: toJson(method.output, response) };
    } catch (err) {
      if (!(err instanceof ConnectError)) throw err;
      const info = err.findDetails(ErrorInfo)[0];
      const bad = err.findDetails(BadRequest)[0];
      const failure = {
        code: codeName(err.code),
        rawMessage: err.rawMessage,
        reason: info?.reason ?? null,
        domain: info?.domain ?? null,
        metadata: info ? { ...info.metadata } : {},
        violations: (bad?.fieldViolations ?? []).map((v) => ({ field: v.field, reason: v.reason })),
      };
      Object.assign(record, { code: failure.code, answeredRequestId: err.metadata.get("x-request-id") });
      return { error: failure };
    }
  }

  const tag = `${process.pid}-${Date.now() % 100000}`;
  const created = await call("create-project", ProjectService, "CreateProject", {
    name: `Node H2 ${tag}`,
    description: "made by connect-node over HTTP/2",
    timezone: "Europe/Paris",
    environment: "ENVIRONMENT_SANDBOX",
  });
  const projectId = created.ok?.project?.id;
  if (!projectId) throw new Error(`CreateProject failed: ${JSON.stringify(created)}`);
  const fetched = await call("get-project", ProjectService, "GetProject", { id: projectId });
  const employee = await call("create-employee", EmployeeService, "CreateEmployee", {
    projectId,
    name: "Ada Lovelace",
    email: "ada@example.com",
    role: "Engineer",
    department: "R&D",
    status: "EMPLOYEE_STATUS_ACTIVE",
  });
  await call("create-employee-2", EmployeeService, "CreateEmployee", {
    projectId,
    name: "Charles Babbage",
    email: "charles@example.com",
    role: "Engineer",
    department: "R&D",
    status: "EMPLOYEE_STATUS_INACTIVE",
  });
  const employeeId = employee.ok?.employee?.id;
  const queried = await call("query-employees", EmployeeService, "QueryEmployees", {
    projectId,
    query: {
      keyword: "lovelace",
      filters: { status: { values: ["active"] } },
      sorting: { field: "name", order: "SORT_ORDER_ASC" },
      pagination: { page: 1, pageSize: 20 },
    },
  });
  const listed = await call("query-projects", ProjectService, "QueryProjects", {
    query: { keyword: `Node H2 ${tag}`, pagination: { page: 1, pageSize: 10 } },
  });
  // A well-formed id nobody has: the domain's not-found, with its ErrorInfo.
  const missing = await call("get-missing-employee", EmployeeService, "GetEmployee", {
    projectId,
    id: "22222222222222",
  });
  // Not an id at all: refused by validation, the violated field named in BadRequest.
  const invalid = await call("get-invalid-project", ProjectService, "GetProject", { id: "not-an-id" });

  sessionManager.countFrom(); // the concurrent part: how many of its streams were open at once
  const concurrent = await Promise.all(
    Array.from({ length: CONCURRENT_CALLS }, (_, i) =>
      i % 2 === 0
        ? call(`concurrent-${i}`, EmployeeService, "GetEmployee", { projectId, id: employeeId })
        : call(`concurrent-${i}`, ProjectService, "GetProject", { id: projectId }),
    ),
  );
  const concurrentPeak = sessionManager.peakCounted;
  await sessionManager.settled();

  const [session] = sessionManager.sessions;
  const http2 = {
    sessions: sessionManager.sessions.size,
    alpnProtocol: session?.alpnProtocol ?? null,
    localAddress: session?.socket.localAddress ?? null,
    localPort: session?.socket.localPort ?? null,
    serverMaxConcurrentStreams: session?.remoteSettings.maxConcurrentStreams ?? null,
    streamIds: [...sessionManager.streamIds],
    concurrentPeakOpenStreams: concurrentPeak,
  };
  const sessionCalls = [...calls]; // the calls of that one session
  const sessionContentTypes = { request: [...contentTypes.request], response: [...contentTypes.response] };
  const cancelling = await cancelMany(createClient(service("grpc.health.v1.Health"), transport), sessionManager);
  const after = await call("after-cancelling", ProjectService, "GetProject", { id: projectId });

  const summary = {
    http2,
    cancelling: { ...cancelling, after },
    contentTypes: sessionContentTypes,
    calls: sessionCalls,
    created,
    fetched,
    employee,
    queried,
    listed,
    missing,
    invalid,
    concurrent: concurrent.map((answer) => answer.ok?.project?.id ?? answer.ok?.employee?.id ?? answer),
    projectId,
    employeeId,
  };
  sessionManager.abort();
  process.stdout.write(`${JSON.stringify(summary)}\n`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
