// A plain Node HTTP server as an upstream: node keepalive_upstream.mjs MS
// keeps idle connections MS milliseconds (Node's default is 5000), which
// its answers say as "Keep-Alive: timeout=N". Prints "listening PORT", then
// "connection" for each connection it accepts.
import http from "node:http";

const server = http.createServer((request, response) => {
  response.writeHead(200, { "Content-Type": "text/plain" });
  response.end("ok");
});
server.keepAliveTimeout = Number(process.argv[2]);
server.on("connection", () => console.log("connection"));
server.listen(0, "127.0.0.1", () => console.log(`listening ${server.address().port}`));
