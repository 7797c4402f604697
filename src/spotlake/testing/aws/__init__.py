"""Test support for the AWS collectors: what moto does not offer (spot placement scores with the
real limits and errors, the Spot Instance Advisor's JSON, realistic per-zone prices), served
behind the real boto3 clients so every call goes through botocore as in production."""
