import { parseArgs } from "node:util";
import { startEmulator, type Emulator } from "./emulator.js";
import { createLogger } from "./logger.js";
import {
  DEFAULT_LOG_LEVEL,
  emulatorCommandSettings,
  EmulatorSettingsError,
  ENV_NAMES,
  LOG_LEVEL_VARIABLE,
  LOG_LEVELS,
  type EmulatorCommandSetting,
  type EmulatorCommandSettings,
} from "./options.js";

/**
 * The `acs-identity-emulator` command (packages/emulator/README.md): flags parsed with
 * `node:util` parseArgs (strict), each standing for its `ACS_EMULATOR_*` variable and winning over
 * it; the values are validated by options.ts, the one module that reads the environment.
 */
interface Flag {
  /** The long name, without its dashes. */
  readonly name: string;
  readonly setting: EmulatorCommandSetting;
  /** A flag with a value: its placeholder in `--help`. */
  readonly value?: string;
  /** A switch: the variable's value it stands for. */
  readonly sets?: string;
  readonly help: string;
}

export const EMULATOR_FLAGS: readonly Flag[] = [
  { name: "host", setting: "host", value: "H", help: "address to listen on (default 127.0.0.1)" },
  {
    name: "port",
    setting: "port",
    value: "P",
    help: "port (default 10500; 0: any free port, the printed line says which)",
  },
  {
    name: "state",
    setting: "stateFile",
    value: "FILE",
    help: "keep identities, revocations and the signing key in this JSON file across restarts",
  },
  {
    name: "cert",
    setting: "tlsCert",
    value: "PEM",
    help: "serve HTTPS only, with this PEM certificate (chain) file; with --key",
  },
  { name: "key", setting: "tlsKey", value: "PEM", help: "the certificate's PEM private key file" },
  {
    name: "loose",
    setting: "loose",
    sets: "true",
    help: "answer any api-version: one it does not know gets its newest surface",
  },
  {
    name: "entra",
    setting: "entra",
    sets: "on",
    help: "Entra ID: managed identity; with --cert/--key also a test tenant (client secret, test user)",
  },
  {
    name: "access-key",
    setting: "accessKey",
    value: "BASE64",
    help: "the key (default: the well-known development key; a flag is seen by `ps`)",
  },
  {
    name: "latency-ms",
    setting: "latencyMs",
    value: "N",
    help: "milliseconds added before every answer (0..60000, default 0)",
  },
  {
    name: "throttle",
    setting: "throttle",
    value: "off|acs",
    help: "acs: the service's per-30-second limits, 429 with Retry-After (default off)",
  },
  {
    name: "revocation-delay-s",
    setting: "revocationDelaySeconds",
    value: "N",
    help: "revoked tokens stay valid N more seconds (0..900, default 0), as on the service",
  },
  {
    name: "log-level",
    setting: "logLevel",
    value: "LEVEL",
    help: `the logs on stderr: ${LOG_LEVELS.join(", ")} (default: LOG_LEVEL, else ${DEFAULT_LOG_LEVEL})`,
  },
];

/** The variable a flag stands for. */
const variableOf = (setting: EmulatorCommandSetting) =>
  setting === "logLevel" ? LOG_LEVEL_VARIABLE : ENV_NAMES[setting];

const USAGE =
  "acs-identity-emulator [--host H] [--port P] [--state FILE] [--cert PEM --key PEM] [--loose] [--entra]\n" +
  "                      [--access-key BASE64] [--latency-ms N] [--throttle off|acs] [--revocation-delay-s N]\n" +
  "                      [--log-level LEVEL]";

/** `--help`: every flag with its variable, then the variables without a flag. */
export function emulatorHelp(): string {
  const rows = EMULATOR_FLAGS.map((flag) => [
    `--${flag.name}${flag.value ? ` ${flag.value}` : ""}`,
    `${variableOf(flag.setting)}${flag.sets ? `=${flag.sets}` : ""}`,
    flag.help,
  ]);
  rows.push(["-h, --help", "", "this text"]);
  const width = (column: number) => Math.max(...rows.map((row) => row[column]!.length)) + 2;
  const [first, second] = [width(0), width(1)];
  const flagged = new Set(EMULATOR_FLAGS.map((flag) => flag.setting));
  const others = Object.entries(ENV_NAMES)
    .filter(([setting]) => !flagged.has(setting as EmulatorCommandSetting))
    .map(([, variable]) => variable);
  return [
    `Usage: ${USAGE}`,
    "",
    "An emulator of the Azure Communication Services Identity REST API, for Microsoft's SDKs.",
    "Once it listens it prints COMMUNICATION_SERVICES_CONNECTION_STRING=endpoint=...;accesskey=...",
    "first on stdout, then the lines of the modes in use. With --entra, in this order: with",
    "--cert/--key, AZURE_TENANT_ID=, AZURE_CLIENT_ID=, AZURE_CLIENT_SECRET= and",
    "AZURE_AUTHORITY_HOST= (its test tenant's application); IDENTITY_ENDPOINT= and IDENTITY_HEADER=",
    "(managed identity); with --cert/--key, AZURE_USERNAME= and AZURE_PASSWORD= (its test user).",
    "Logs go to stderr as JSON lines. Ctrl-C or SIGTERM stops it (exit 0); bad flags or settings",
    "are listed on stderr (exit 1).",
    "",
    "Flags (each one also read from its variable; a flag wins over the variable):",
    ...rows.map(
      ([flag, variable, help]) => `  ${flag!.padEnd(first)}${variable!.padEnd(second)}${help}`,
    ),
    "",
    `Variables without a flag: ${others.join(", ")}.`,
    "Every setting: docs/configuration.md of the ACS Identity Gateway, or the package's README.",
    "",
  ].join("\n");
}

type FlagValues = Partial<Record<EmulatorCommandSetting, { flag: string; value: string }>>;

export type ParsedFlags = { kind: "help" } | { kind: "run"; flags: FlagValues; problems: string[] };

const PARSE_OPTIONS = {
  ...Object.fromEntries(
    EMULATOR_FLAGS.map((flag) => [flag.name, { type: flag.value ? "string" : "boolean" }] as const),
  ),
  help: { type: "boolean", short: "h" },
} as const;

/**
 * Parses the flags strictly; when they break the rules, every broken one is reported (parseArgs
 * itself stops at the first), and the good ones are still read so their values get checked too.
 */
export function parseEmulatorFlags(argv: readonly string[]): ParsedFlags {
  const problems: string[] = [];
  let strictError: string | undefined;
  try {
    parseArgs({ args: [...argv], options: PARSE_OPTIONS, strict: true, allowPositionals: false });
  } catch (error) {
    strictError = error instanceof Error ? error.message : String(error);
  }
  const { values, tokens } = parseArgs({
    args: [...argv],
    options: PARSE_OPTIONS,
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  if (values.help === true) {
    return { kind: "help" };
  }
  const byName = new Map(EMULATOR_FLAGS.map((flag) => [flag.name, flag]));
  const flags: FlagValues = {};
  for (const token of tokens) {
    if (token.kind === "positional") {
      problems.push(`unexpected argument "${token.value}"`);
      continue;
    }
    if (token.kind !== "option" || token.name === "help") {
      continue;
    }
    const flag = byName.get(token.name);
    if (!flag) {
      problems.push(`${token.rawName}: unknown flag`);
    } else if (flag.sets !== undefined) {
      if (token.value !== undefined) {
        problems.push(`${token.rawName}: takes no value`);
      } else {
        flags[flag.setting] = { flag: token.rawName, value: flag.sets };
      }
    } else if (token.value === undefined || token.value === "") {
      problems.push(`${token.rawName}: needs a value (${flag.value})`);
    } else if (!token.inlineValue && token.value.startsWith("-")) {
      problems.push(
        `${token.rawName}: needs a value (${flag.value}); for one starting with "-", write ${token.rawName}=VALUE`,
      );
    } else {
      flags[flag.setting] = { flag: token.rawName, value: token.value };
    }
  }
  if (strictError !== undefined && problems.length === 0) {
    problems.push(strictError);
  }
  return { kind: "run", flags, problems };
}

/**
 * What the command prints once the emulator listens, one write: the connection string line first,
 * then the lines each mode adds (`Emulator.outputLines`).
 */
export function readyLines(emulator: Pick<Emulator, "connectionString" | "outputLines">): string {
  return [
    `COMMUNICATION_SERVICES_CONNECTION_STRING=${emulator.connectionString}`,
    ...emulator.outputLines,
  ]
    .map((line) => `${line}\n`)
    .join("");
}

/** Runs the command: `--help`, or the emulator until SIGINT / SIGTERM. Sets the exit code. */
export async function runEmulatorCommand(argv: readonly string[]): Promise<void> {
  const parsed = parseEmulatorFlags(argv);
  if (parsed.kind === "help") {
    process.stdout.write(emulatorHelp());
    return;
  }
  const problems = [...parsed.problems];
  let settings: EmulatorCommandSettings | undefined;
  try {
    settings = emulatorCommandSettings(parsed.flags);
  } catch (error) {
    if (!(error instanceof EmulatorSettingsError)) {
      throw error;
    }
    problems.push(...error.problems);
  }
  if (problems.length > 0 || settings === undefined) {
    process.stderr.write(
      `acs-identity-emulator: invalid flags or settings:\n${problems.map((p) => `  - ${p}`).join("\n")}\n` +
        "(acs-identity-emulator --help lists the flags)\n",
    );
    process.exitCode = 1;
    return;
  }

  const logger = createLogger({ level: settings.logLevel, name: "acs-emulator" }, process.stderr);
  let emulator: Emulator;
  try {
    emulator = await startEmulator({ ...settings.options, logger });
  } catch (error) {
    // e.g. EADDRINUSE or an unreadable state file: say which, without the settings' values.
    process.stderr.write(
      `the emulator could not start: ${error instanceof Error ? error.message : String(error)}\n`,
    );
    process.exitCode = 1;
    return;
  }
  // Handlers first, then the lines: whoever reads them may signal at once.
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      return;
    }
    stopping = true;
    logger.info({ signal }, "stopping the emulator");
    emulator.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  process.stdout.write(readyLines(emulator));
}
