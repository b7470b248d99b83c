"""Renders docs/architecture.png, the memberflow production architecture on AWS, from this code.

    pip install -e ".[docs]"            # the `diagrams` package
    apt-get install graphviz            # its `dot` renderer (any OS package of Graphviz will do)
    python docs/diagrams/architecture.py

The numbered edges are the steps that docs/architecture.md ("The flow, step by step") explains.
Change the design here first, re-render, and commit the PNG with the change.
"""

from pathlib import Path

from diagrams import Cluster, Diagram, Edge
from diagrams.aws.analytics import Athena, ManagedStreamingForKafka
from diagrams.aws.compute import ECR
from diagrams.aws.database import RDSPostgresqlInstance
from diagrams.aws.devtools import Codepipeline
from diagrams.aws.management import Cloudtrail, Cloudwatch
from diagrams.aws.network import ALB, Endpoint
from diagrams.aws.security import KMS, WAF, SecretsManager, SingleSignOn
from diagrams.aws.storage import EFS, S3
from diagrams.k8s.compute import Deployment, Job, Pod
from diagrams.onprem.client import Client, Users

OUTPUT = Path(__file__).resolve().parent.parent / "architecture"  # diagrams appends .png

GRAPH = {"fontsize": "22", "pad": "0.4", "nodesep": "0.9", "ranksep": "1.0", "splines": "spline"}
NODE = {"fontsize": "12"}


def flow(step: str, color: str = "black", style: str = "solid") -> Edge:
    return Edge(label=step, color=color, fontcolor=color, style=style, fontsize="13")


def render() -> None:
    with Diagram(
        "memberflow on AWS (ap-southeast-1) — production",
        filename=str(OUTPUT),
        outformat="png",
        show=False,
        direction="TB",
        graph_attr=GRAPH,
        node_attr=NODE,
    ):
        with Cluster("Outside the platform"):
            upload_clients = Client("image upload clients\n(API keys)")
            producers = Client("company apps\n(image producers)")
            upstream = Client("membership upstream\n(CSV drops)")
            engineers = Users("engineers, on-call")
            analysts = Users("analysts")
            teams = Users("logistics / analytics /\nsales team users")

        with Cluster("Company shared services"):
            idp = SingleSignOn("IAM Identity Center\n(federated with the IdP)")
            msk = ManagedStreamingForKafka("MSK (company-managed)\ntopic images.uploads\nIAM auth + TLS")
            ci = Codepipeline("CI/CD\n(tests, image, helm)")

        with Cluster("memberflow-prod account: one VPC over 2 AZs, private subnets, VPC endpoints"):
            waf = WAF("AWS WAF")
            public_alb = ALB("public ALB\nTLS 1.2+")
            internal_alb = ALB("internal ALB\nOIDC sign-in")

            with Cluster("EKS system node group (on-demand, 2 AZs)"):
                api = Deployment("upload API\n(FastAPI, HPA 2-20)")
                webserver = Deployment("Dagster webserver\n(+ read-only)")
                daemon = Deployment("Dagster daemon\n(sensors, schedules,\nrun queue)")
                code = Deployment("code location\nmemberflow gRPC\n(sensors, Kafka ingest)")

            with Cluster("EKS Karpenter node pool dagster-runs (Spot first, scales to zero)"):
                runs = Job("run pods\n(one Job per run)")
                membership_run = Pod("membership batch")
                image_run = Pod("image hour\n(processing)")
                sales_run = Pod("star schema\n+ BI views")
                purge_run = Pod("7-day purge\n(hourly)")

            with Cluster("Data subnets (no internet route)"):
                rds = RDSPostgresqlInstance(
                    "RDS PostgreSQL (Multi-AZ)\nmemberflow: sales DB\ndagster: instance storage"
                )
                efs = EFS("EFS\nwarehouse.duckdb")

        with Cluster("Regional services: SSE-KMS everywhere, TLS-only bucket policies"):
            zones = S3("zones bucket\nlanding/ quarantine/ members/\nimages/processed images/metadata")
            logs_bucket = S3("dagster bucket\ncompute logs (30 d)")
            athena = Athena("Athena + Glue catalog")
            ecr = ECR("ECR\nmemberflow image")
            with Cluster("keys, secrets, observability"):
                KMS("KMS keys")
                SecretsManager("Secrets Manager")
                Cloudwatch("CloudWatch")
                Cloudtrail("CloudTrail")
                Endpoint("VPC endpoints")

        # Ingestion
        upload_clients >> flow("1 POST /v1/images") >> waf >> public_alb >> api
        api >> flow("1 image + sidecar") >> zones
        api >> flow("1 registry row", "gray") >> rds
        producers >> flow("2 publish") >> msk
        msk >> flow("2 consume") >> code
        code >> flow("2 land") >> zones
        upstream >> flow("3 drop CSV") >> zones

        # Orchestration
        daemon >> flow("4 sensor ticks") >> code
        daemon >> flow("4 launch Job") >> runs
        runs - Edge(style="dashed") - [membership_run, image_run, sales_run, purge_run]
        membership_run >> flow("5 classify, store") >> zones
        membership_run >> flow("5 upsert members") >> rds
        image_run >> flow("5 thumbnails, metadata") >> zones
        sales_run >> flow("5 extract") >> rds
        sales_run >> flow("5 refresh") >> efs
        purge_run >> flow("6 delete > 7 days", "firebrick") >> zones
        purge_run >> flow("6 registry rows,\nDagster runs", "firebrick") >> rds
        daemon >> flow("8 runs, events", "gray") >> rds
        runs >> flow("8 step logs", "gray") >> logs_bucket

        # Use
        engineers >> flow("9 sign in", "darkgreen") >> idp
        engineers >> flow("9 Dagster UI", "darkgreen") >> internal_alb >> webserver
        teams >> flow("7 SQL as team role", "darkgreen") >> rds
        analysts >> flow("7 SQL", "darkgreen") >> athena >> zones
        analysts >> flow("7 DuckDB read-only", "darkgreen", "dashed") >> efs

        # Delivery
        ci >> flow("10 image", "purple") >> ecr
        ci >> flow("10 helm upgrade", "purple") >> code


if __name__ == "__main__":
    render()
    print(f"wrote {OUTPUT}.png")
