"""Prepares a freshly started moto server (`moto_server -H 127.0.0.1 -p PORT`) as an upstream
that checks SigV4: creates an IAM user with an access key allowed everything, then switches
moto's authentication on (until then moto accepts any request). Prints the key id and secret
on one line. Used by the Rust and Python upstream tests.

    python moto_bootstrap.py http://127.0.0.1:PORT
"""

import json
import sys
import urllib.request

import boto3


def main(endpoint: str) -> None:
    iam = boto3.client(
        "iam",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="bootstrap",
        aws_secret_access_key="bootstrap",
    )
    iam.create_user(UserName="sluice")
    key = iam.create_access_key(UserName="sluice")["AccessKey"]
    iam.put_user_policy(
        UserName="sluice",
        PolicyName="all",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        ),
    )
    # From now on every request must be signed by a key moto knows (the body must be text/plain).
    request = urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth",
        data=b"0",
        method="POST",
        headers={"Content-Type": "text/plain"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200, response.status
    print(key["AccessKeyId"], key["SecretAccessKey"])


if __name__ == "__main__":
    main(sys.argv[1])
