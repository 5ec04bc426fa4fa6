/**
 * The ceiling: bare Apollo Server 5 on Fastify answering `{ hello }`, with the same integration
 * the gateway uses and nothing else (no auth, no cache, no plugins of our own). Whatever the
 * gateway adds on top is measured as a ratio to this. Prints `LISTENING <url>` once it listens.
 */
import { ApolloServer } from "@apollo/server";
import { fastifyApolloDrainPlugin, fastifyApolloHandler } from "@as-integrations/fastify";
import Fastify from "fastify";

const fastify = Fastify();
const apollo = new ApolloServer({
  typeDefs: "type Query { hello: String }",
  resolvers: { Query: { hello: () => "world" } },
  plugins: [fastifyApolloDrainPlugin(fastify)],
});
await apollo.start();
fastify.route({
  url: "/graphql",
  method: ["GET", "POST", "OPTIONS"],
  handler: fastifyApolloHandler(apollo),
});
await fastify.listen({ host: "127.0.0.1", port: 0 });
const address = fastify.server.address();
const port = typeof address === "object" && address ? address.port : 0;
process.stdout.write(`LISTENING http://127.0.0.1:${port}/graphql\n`);
process.once("SIGTERM", () => {
  fastify.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
});
